//! A file of the host sent as a response body, a chunk at a time: what a download of any size
//! costs is 64 KiB of memory and one hop to the blocking pool per chunk.

use axum::body::Body;

/// The rest of `file`, read on the blocking pool as the client takes it.
pub fn file_body(file: impl std::io::Read + Send + 'static) -> Body {
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            let mut chunk = vec![0; 64 * 1024];
            let n = file.read(&mut chunk)?;
            chunk.truncate(n);
            Ok::<_, std::io::Error>((chunk, file))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|read| read);
        match read {
            Ok((chunk, _)) if chunk.is_empty() => None,
            Ok((chunk, file)) => Some((Ok(chunk), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(chunks)
}
