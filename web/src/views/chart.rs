//! Charts drawn on the server as SVG, from the sampled history: no script, nothing to build, a
//! page that carries its pictures. Pure: points in, markup out. Time runs left to right in UTC;
//! a stretch with no sample is a gap, never a line drawn across it; however many points come in,
//! at most [`MAX_POINTS`] are drawn (points that share a stretch are averaged).

use std::fmt::Write as _;

use crate::text::escape;

/// The most vertices one line of a chart has.
pub const MAX_POINTS: usize = 240;

type Points = Vec<(i64, f64)>;

/// One line: its values at their times (unix seconds, oldest first).
pub struct Series<'a> {
    /// What it is, for its title and its class (`most players`: `line-most-players`).
    pub label: &'a str,
    pub points: Vec<(i64, f64)>,
}

/// The stretch of time a chart shows, and how far apart its points are: two points further apart
/// than `step` have a gap between them.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub from: i64,
    pub to: i64,
    pub step: i64,
}

/// How a chart writes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Count,
    Percent,
    Bytes,
}

impl Scale {
    pub fn label(self, value: f64) -> String {
        match self {
            Scale::Count if value.fract() == 0.0 => format!("{value:.0}"),
            Scale::Count => format!("{value:.1}"),
            Scale::Percent => format!("{value:.0}%"),
            Scale::Bytes => l4d2ctl::api::bytes_text(value.max(0.0) as u64),
        }
    }
}

const SPARK: Area = Area { width: 120.0, height: 24.0, left: 1.0, right: 1.0, top: 2.0, bottom: 2.0 };
const CHART: Area = Area { width: 640.0, height: 150.0, left: 56.0, right: 12.0, top: 10.0, bottom: 22.0 };

/// A small line of `series` over `frame`, with no axes: a row of the dashboard.
pub fn sparkline(title: &str, series: &Series<'_>, frame: Frame, scale: Scale) -> String {
    let b = SPARK;
    let (points, step) = downsample(&series.points, frame, MAX_POINTS);
    let y_max = nice(points.iter().map(|p| p.1).fold(0.0, f64::max), scale);
    let mut svg = open(&b, "sparkline", &format!("{title}: {}", described(series, scale)));
    let d = path(&points, Frame { step, ..frame }, &b, y_max);
    let _ = write!(svg, r#"<path class="line line-{}" d="{d}"/>"#, class_of(series.label));
    svg.push_str("</svg>");
    svg
}

/// A chart of `series` over `frame` with its axes: times in UTC below (days for a week, hours for
/// a day), zero and the highest value at the left; `title` and each line's highest point in its
/// accessible title.
pub fn chart(title: &str, series: &[Series<'_>], frame: Frame, scale: Scale) -> String {
    let b = CHART;
    let drawn: Vec<(&Series<'_>, Points, i64)> = series
        .iter()
        .map(|s| {
            let (points, step) = downsample(&s.points, frame, MAX_POINTS);
            (s, points, step)
        })
        .collect();
    let highest = drawn.iter().flat_map(|(_, points, _)| points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let y_max = nice(highest, scale);
    let described: Vec<String> = series.iter().map(|s| described(s, scale)).collect();
    let mut svg = open(&b, "chart", &format!("{title}: {}", described.join("; ")));
    axes(&mut svg, &b, frame, y_max, scale);
    for (s, points, step) in &drawn {
        let d = path(points, Frame { step: *step, ..frame }, &b, y_max);
        let _ = write!(svg, r#"<path class="line line-{}" d="{d}"/>"#, class_of(s.label));
    }
    if series.iter().all(|s| s.points.is_empty()) {
        let (x, y) = (b.left + b.plot_width() / 2.0, b.top + b.plot_height() / 2.0);
        let _ = write!(svg, r#"<text class="empty" x="{x:.1}" y="{y:.1}" text-anchor="middle">no samples yet</text>"#);
    }
    svg.push_str("</svg>");
    svg
}

/// A line's class from its label: letters and digits, lower case, the rest `-`.
fn class_of(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Where a chart is drawn within its picture, in pixels.
#[derive(Debug, Clone, Copy)]
struct Area {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Area {
    fn plot_width(&self) -> f64 {
        self.width - self.left - self.right
    }
    fn plot_height(&self) -> f64 {
        self.height - self.top - self.bottom
    }
    fn x(&self, frame: Frame, t: i64) -> f64 {
        let span = (frame.to - frame.from).max(1) as f64;
        self.left + (t - frame.from).clamp(0, frame.to - frame.from) as f64 / span * self.plot_width()
    }
    fn y(&self, y_max: f64, value: f64) -> f64 {
        self.top + self.plot_height() - (value / y_max).clamp(0.0, 1.0) * self.plot_height()
    }
}

/// The opening of an SVG picture, with its accessible name.
fn open(b: &Area, class: &str, title: &str) -> String {
    let title = escape(title);
    format!(
        r#"<svg class="{class}" viewBox="0 0 {} {}" width="{}" height="{}" role="img"><title>{title}</title>"#,
        b.width, b.height, b.width, b.height
    )
}

/// A line's words: its highest point and when (`players: highest 5 at 2026-12-01 20:00 UTC`).
fn described(series: &Series<'_>, scale: Scale) -> String {
    let label = series.label;
    let highest = series.points.iter().copied().fold(None, |best: Option<(i64, f64)>, p| match best {
        Some(b) if b.1 >= p.1 => Some(b),
        _ => Some(p),
    });
    match highest {
        Some((at, value)) => format!("{label}: highest {} at {} UTC", scale.label(value), minute(at)),
        None => format!("{label}: no samples yet"),
    }
}

/// The axes: the lowest and highest values, and the times of day or the days in UTC.
fn axes(svg: &mut String, b: &Area, frame: Frame, y_max: f64, scale: Scale) {
    let (left, right, bottom) = (b.left, b.width - b.right, b.top + b.plot_height());
    let _ = write!(svg, r#"<path class="axis" d="M{left:.1},{:.1}V{bottom:.1}H{right:.1}"/>"#, b.top);
    let _ = write!(svg, r#"<path class="grid" d="M{left:.1},{:.1}H{right:.1}"/>"#, b.top);
    for (value, y) in [(y_max, b.top), (0.0, bottom)] {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 4.0,
            y + 4.0,
            escape(&scale.label(value))
        );
    }
    let tick = if frame.to - frame.from > 2 * 86_400 { 86_400 } else { 6 * 3_600 };
    let mut t = frame.from - frame.from.rem_euclid(tick) + tick;
    while t < frame.to {
        let x = b.x(frame, t);
        let label = if tick == 86_400 { day(t) } else { hour(t) };
        let _ = write!(svg, r#"<path class="grid" d="M{x:.1},{:.1}V{bottom:.1}"/>"#, b.top);
        let _ = write!(
            svg,
            r#"<text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            b.height - 6.0
        );
        t += tick;
    }
    let _ = write!(svg, r#"<text class="tick" x="{right:.1}" y="{:.1}" text-anchor="end">UTC</text>"#, b.height - 6.0);
}

/// A line's path in whole pixels: `M` where it starts and after each gap, then `l` by the
/// distance to each next point. A point level with the points either side of it is left out (the
/// line passes through it all the same): a quiet night is one stroke, and a dashboard of many
/// rows stays small. A point alone between gaps is a dot.
fn path(points: &[(i64, f64)], frame: Frame, b: &Area, y_max: f64) -> String {
    let mut runs: Vec<Vec<(i64, i64)>> = Vec::new();
    let mut previous: Option<i64> = None;
    for &(t, value) in points {
        let at = (b.x(frame, t).round() as i64, b.y(y_max, value).round() as i64);
        match runs.last_mut() {
            Some(run) if previous.is_some_and(|p| t - p <= frame.step) => run.push(at),
            _ => runs.push(vec![at]),
        }
        previous = Some(t);
    }
    let mut d = String::new();
    for run in runs {
        let kept: Vec<(i64, i64)> = run
            .iter()
            .enumerate()
            .filter(|&(i, at)| {
                let level = |j: Option<usize>| j.and_then(|j| run.get(j)).is_some_and(|other| other.1 == at.1);
                !(i > 0 && (run[i - 1] == *at || level(Some(i - 1)) && level(Some(i + 1))))
            })
            .map(|(_, at)| *at)
            .collect();
        let _ = write!(d, "M{},{}", kept[0].0, kept[0].1);
        for pair in kept.windows(2) {
            let _ = write!(d, "l{},{}", pair[1].0 - pair[0].0, pair[1].1 - pair[0].1);
        }
        if kept.len() == 1 {
            d.push_str("h0.1");
        }
    }
    d
}

/// The points within `frame`, at most `max` of them: when there are more, those of each stretch
/// of `(to - from) / max` seconds are averaged into one at the stretch's start. The step between
/// the points drawn, which grows with the stretch.
fn downsample(points: &[(i64, f64)], frame: Frame, max: usize) -> (Vec<(i64, f64)>, i64) {
    let within = points.iter().copied().filter(|(t, v)| *t >= frame.from && *t <= frame.to && v.is_finite());
    if points.len() <= max {
        return (within.collect(), frame.step);
    }
    let stretch = ((frame.to - frame.from) / max.max(1) as i64 + 1).max(frame.step);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(max + 1);
    let mut sum = (0.0, 0u32);
    let mut current: Option<i64> = None;
    for (t, value) in within {
        let bucket = frame.from + (t - frame.from) / stretch * stretch;
        if current.is_some_and(|c| c != bucket) {
            out.push((current.unwrap_or(bucket), sum.0 / f64::from(sum.1)));
            sum = (0.0, 0);
        }
        current = Some(bucket);
        sum = (sum.0 + value, sum.1 + 1);
    }
    if let Some(bucket) = current {
        out.push((bucket, sum.0 / f64::from(sum.1)));
    }
    (out, stretch + frame.step)
}

/// The top of the scale: the highest value rounded up to 1, 2 or 5 times a power of ten (a
/// percentage to at least 10, a count to at least 1).
fn nice(highest: f64, scale: Scale) -> f64 {
    let floor = match scale {
        Scale::Count => 1.0,
        Scale::Percent => 10.0,
        Scale::Bytes => 1024.0 * 1024.0,
    };
    let highest = highest.max(floor);
    // Bytes are rounded in the unit they are written in (`500 MiB`, not 477).
    let mut unit = 1.0;
    while scale == Scale::Bytes && highest / unit >= 1024.0 {
        unit *= 1024.0;
    }
    let value = highest / unit;
    let power = 10f64.powf(value.log10().floor());
    let top = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|top| *top >= value).unwrap_or(value);
    top * unit
}

fn utc(at: i64) -> String {
    left4me_state::clock::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64))
}

/// `2026-12-01 20:00`.
fn minute(at: i64) -> String {
    utc(at).get(..16).unwrap_or_default().replace('T', " ")
}

/// `12-01`.
fn day(at: i64) -> String {
    utc(at).get(5..10).unwrap_or_default().to_owned()
}

/// `18:00`.
fn hour(at: i64) -> String {
    utc(at).get(11..16).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    // 2026-12-01 00:00 UTC.
    const FROM: i64 = 1_796_083_200;

    fn frame(step: i64) -> Frame {
        Frame { from: FROM, to: FROM + DAY, step }
    }

    fn paths(svg: &str) -> Vec<&str> {
        svg.split(r#"class="line"#).skip(1).filter_map(|rest| rest.split(r#"d=""#).nth(1)?.split('"').next()).collect()
    }

    /// A path's lines as the absolute pixels they pass through.
    fn lines(d: &str) -> Vec<Vec<(i64, i64)>> {
        let mut lines: Vec<Vec<(i64, i64)>> = Vec::new();
        let d = d.replace("h0.1", "");
        let mut rest = d.as_str();
        while let Some(command) = rest.chars().next() {
            let end = rest[1..].find(['M', 'l']).map_or(rest.len(), |i| i + 1);
            let (x, y) = rest[1..end].split_once(',').unwrap();
            let (x, y): (i64, i64) = (x.parse().unwrap(), y.parse().unwrap());
            match command {
                'M' => lines.push(vec![(x, y)]),
                _ => {
                    let line = lines.last_mut().unwrap();
                    let last = *line.last().unwrap();
                    line.push((last.0 + x, last.1 + y));
                }
            }
            rest = &rest[end..];
        }
        lines
    }

    #[test]
    fn each_point_is_drawn_where_its_time_and_value_put_it() {
        let points =
            vec![(FROM, 0.0), (FROM + 900, 2.0), (FROM + 1800, 2.0), (FROM + 2700, 2.0), (FROM + DAY / 2, 4.0)];
        let series = Series { label: "players", points };
        let svg = sparkline("coop-1", &series, frame(900), Scale::Count);
        // 118 px wide from x = 1, 20 px high from y = 2; the top of the scale is 5 (4 rounded up).
        let d = paths(&svg)[0];
        let x = |t: i64| (1.0 + (t - FROM) as f64 / DAY as f64 * 118.0).round() as i64;
        let y = |v: f64| (2.0 + 20.0 - v / 5.0 * 20.0).round() as i64;
        // The point level with both its neighbours is on the line without a vertex of its own.
        let expected = vec![
            vec![(x(FROM), y(0.0)), (x(FROM + 900), y(2.0)), (x(FROM + 2700), y(2.0))],
            vec![(x(FROM + DAY / 2), y(4.0))],
        ];
        assert_eq!(lines(d), expected, "{d}");
        assert!(d.ends_with("h0.1"), "a point alone is a dot: {d}");
        assert!(svg.contains("<title>coop-1: players: highest 4 at 2026-12-01 12:00 UTC</title>"), "{svg}");
    }

    #[test]
    fn a_stretch_without_samples_splits_the_line() {
        let points: Vec<(i64, f64)> =
            (0..4).map(|i| (FROM + i * 3600, i as f64)).chain((10..12).map(|i| (FROM + i * 3600, 3.0))).collect();
        let svg = chart("coop-1", &[Series { label: "players", points }], frame(3600), Scale::Count);
        let lines = lines(paths(&svg)[0]);
        assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), [4, 2], "{lines:?}");
        assert!(lines[0].last().unwrap().0 < lines[1][0].0);
    }

    #[test]
    fn text_is_escaped() {
        let series = Series { label: "<b>\"&", points: vec![(FROM, 1.0)] };
        let svg = chart("a <script>alert(1)</script> & 'b'", &[series], frame(900), Scale::Count);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("a &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;b&#39;"), "{svg}");
        assert!(svg.contains(r#"class="line line--b---""#), "{svg}");
    }

    #[test]
    fn any_number_of_points_draws_a_bounded_picture() {
        let week = Frame { from: FROM, to: FROM + 7 * DAY, step: 30 };
        let wave = |i: i64| 4.0 + 4.0 * (i as f64 / 300.0).sin();
        let points: Vec<(i64, f64)> = (0..7 * DAY / 30).map(|i| (FROM + i * 30, wave(i))).collect();
        let small = chart("x", &[Series { label: "players", points: points[..10].to_vec() }], week, Scale::Count);
        let big = chart("x", &[Series { label: "players", points }], week, Scale::Count);
        let lines = lines(paths(&big)[0]);
        assert_eq!(lines.len(), 1, "averaged points stay one line");
        assert!(lines[0].len() <= MAX_POINTS + 1, "{} vertices", lines[0].len());
        let (first, last) = (lines[0][0].0, lines[0].last().unwrap().0);
        assert!(first <= 57 && last >= 625, "the week is drawn whole: {first}..{last}");
        assert!(big.len() < small.len() + 12 * (MAX_POINTS + 1), "{} bytes", big.len());
    }

    #[test]
    fn axes_say_the_days_in_utc_and_the_highest_value() {
        let week = Frame { from: FROM, to: FROM + 7 * DAY, step: 3600 };
        let series = Series { label: "memory", points: vec![(FROM + DAY, 300.0 * 1024.0 * 1024.0)] };
        let svg = chart("coop-1 memory", &[series], week, Scale::Bytes);
        for label in [">12-02<", ">12-07<", ">UTC<", ">500 MiB<", ">0 B<"] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        let empty = chart("coop-1 memory", &[Series { label: "memory", points: vec![] }], week, Scale::Bytes);
        assert!(empty.contains(">no samples yet<") && empty.contains("memory: no samples yet"), "{empty}");
    }
}
