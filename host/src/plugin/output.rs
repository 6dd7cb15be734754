//! A plugin's stdout and stderr: what it wrote since the host last looked, up to the
//! bytes one store may write (`limits.output_bytes`). Past that, writes still succeed and
//! are counted, not kept: printing is never a reason for a plugin to fail.
//! (wasmtime-wasi's `MemoryOutputPipe` refuses writes past its capacity, which traps a
//! Rust guest's `println!`, and keeps every byte, which the host copied on every call.)

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// One output stream of one store; clones share it.
#[derive(Clone, Debug)]
pub struct OutputPipe(Arc<Mutex<Written>>);

#[derive(Debug)]
struct Written {
    /// Bytes not yet taken.
    pending: Vec<u8>,
    /// Bytes the store may still keep.
    left: usize,
    /// Bytes written past the budget and not yet reported.
    dropped: u64,
}

impl OutputPipe {
    /// A pipe keeping at most `budget` bytes over its life.
    pub fn new(budget: usize) -> OutputPipe {
        OutputPipe(Arc::new(Mutex::new(Written { pending: Vec::new(), left: budget, dropped: 0 })))
    }

    /// What was kept and how many bytes were dropped since the last call.
    pub fn take(&self) -> (Vec<u8>, u64) {
        let mut written = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut written.pending), std::mem::take(&mut written.dropped))
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut written = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = bytes.len().min(written.left);
        written.pending.extend_from_slice(&bytes[..kept]);
        written.left -= kept;
        written.dropped += (bytes.len() - kept) as u64;
    }
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for OutputPipe {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for OutputPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready, for any amount: past the budget, bytes are counted and dropped.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for OutputPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_within_the_budget_are_taken_once_and_the_rest_counted() {
        let pipe = OutputPipe::new(10);
        let mut stream = pipe.p2_stream();
        stream.write(Bytes::from_static(b"hello\n")).unwrap();
        assert_eq!(pipe.take(), (b"hello\n".to_vec(), 0));
        assert_eq!(pipe.take(), (Vec::new(), 0), "taken once");
        stream.write(Bytes::from_static(b"world\n")).unwrap();
        assert_eq!(pipe.take(), (b"worl".to_vec(), 2), "the budget is the pipe's whole life");
        stream.write(Bytes::from_static(b"more")).unwrap();
        assert!(stream.check_write().unwrap() > 0, "never full");
        assert_eq!(pipe.take(), (Vec::new(), 4));
    }
}
