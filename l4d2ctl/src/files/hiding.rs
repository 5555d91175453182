//! A reader that hides a server's secret values (its RCON password, its log secret) wherever
//! they appear in what it reads: a log the game wrote or a copy of server.cfg under another name
//! shows them no more than server.cfg itself.

use std::io::Read;

use left4me_state::HIDDEN_SECRET;

/// A secret shorter than this is no value worth hiding (and would hide common text).
const SHORTEST: usize = 6;

/// Reads `inner` with every secret replaced by [`HIDDEN_SECRET`]. A secret cut by a read's end
/// is held back until the next read completes it, so it is hidden whatever the chunk sizes.
pub struct Hiding<R> {
    inner: R,
    secrets: Vec<Vec<u8>>,
    /// Read from `inner`, not yet looked at.
    pending: Vec<u8>,
    /// Looked at, not yet handed out.
    out: Vec<u8>,
    handed: usize,
    ended: bool,
}

/// Shows how many secrets it hides, never what they are.
impl<R> std::fmt::Debug for Hiding<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hiding").field("secrets", &self.secrets.len()).finish_non_exhaustive()
    }
}

impl<R: Read> Hiding<R> {
    pub fn new(inner: R, secrets: &[String]) -> Hiding<R> {
        let secrets = secrets.iter().filter(|s| s.len() >= SHORTEST).map(|s| s.as_bytes().to_vec()).collect();
        Hiding { inner, secrets, pending: Vec::new(), out: Vec::new(), handed: 0, ended: false }
    }

    /// Moves what can be looked at now from `pending` to `out`: everything at the end, else all
    /// but the bytes a secret could still begin in.
    fn look(&mut self) {
        let longest = self.secrets.iter().map(Vec::len).max().unwrap_or(0);
        let keep = if self.ended { 0 } else { longest.saturating_sub(1) };
        let limit = self.pending.len().saturating_sub(keep);
        self.out.clear();
        self.handed = 0;
        let mut at = 0;
        while at < limit {
            // A secret beginning before `limit` ends within `pending`: it is whole here.
            match self.secrets.iter().find(|s| self.pending[at..].starts_with(s)) {
                Some(secret) => {
                    self.out.extend_from_slice(HIDDEN_SECRET.as_bytes());
                    at += secret.len();
                }
                None => {
                    self.out.push(self.pending[at]);
                    at += 1;
                }
            }
        }
        self.pending.drain(..at);
    }
}

impl<R: Read> Read for Hiding<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.handed < self.out.len() {
                let n = buf.len().min(self.out.len() - self.handed);
                buf[..n].copy_from_slice(&self.out[self.handed..self.handed + n]);
                self.handed += n;
                return Ok(n);
            }
            if self.ended && self.pending.is_empty() {
                return Ok(0);
            }
            if !self.ended {
                let mut chunk = vec![0; 64 * 1024];
                let n = self.inner.read(&mut chunk)?;
                self.ended = n == 0;
                self.pending.extend_from_slice(&chunk[..n]);
            }
            self.look();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(bytes: &[u8], secrets: &[String], chunk: usize) -> Vec<u8> {
        /// A reader handing out at most `chunk` bytes a read.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        Hiding::new(Trickle(bytes, chunk), secrets).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_secret_is_hidden_wherever_the_reads_cut_it() {
        let secrets = ["Hunter2Hunter2".to_owned(), "424242424".to_owned(), "abc".to_owned()];
        let text = b"rcon Hunter2Hunter2 and 424242424, abc stays; Hunter2Hunter2Hunter2".to_vec();
        let want = format!("rcon {HIDDEN_SECRET} and {HIDDEN_SECRET}, abc stays; {HIDDEN_SECRET}Hunter2").into_bytes();
        for chunk in [1, 2, 3, 7, 13, 64 * 1024] {
            assert_eq!(through(&text, &secrets, chunk), want, "chunks of {chunk}");
        }
        assert_eq!(through(b"Hunter2Hunter", &secrets, 4), b"Hunter2Hunter", "a secret's start at the end stays");
        assert_eq!(through(b"plain", &[], 2), b"plain");
    }
}
