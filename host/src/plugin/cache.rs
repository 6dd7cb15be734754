//! Compiled plugin artifacts cached on disk, keyed by content hash and engine settings.
//!
//! Only files this host wrote are ever deserialized: the cache directory is ours, each
//! file name carries the sha256 of the wasm and of the engine's compatibility hash, and a
//! file that fails to load is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled artifacts live.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// A `Hasher` that feeds sha256, for the engine's compatibility hash.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    /// A cache in `dir`, or none at all.
    pub fn new(dir: Option<PathBuf>) -> ArtifactCache {
        ArtifactCache { dir }
    }

    /// The default location: `$XDG_CACHE_HOME/amiwarden` or `~/.cache/amiwarden`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("amiwarden"))
    }

    fn path_for(&self, engine: &Engine, wasm_sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..8]);
        Some(dir.join(format!("{wasm_sha256}-{engine_hash}.cwasm")))
    }

    /// Loads the compiled component for `wasm` (whose sha256 is given), compiling and
    /// storing it on a miss. Cache trouble is logged, never fatal.
    pub fn load(&self, engine: &Engine, wasm: &[u8], wasm_sha256: &str) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(engine, wasm_sha256);
        if let Some(path) = &path
            && path.exists()
        {
            // SAFETY-equivalent contract: the file was written by `store` below into our
            // own cache directory under a name bound to the wasm hash and engine settings.
            #[expect(unsafe_code, reason = "deserializing an artifact this host compiled and wrote itself")]
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok((component, true)),
                Err(err) => tracing::warn!(path = %path.display(), "recompiling: cached artifact unusable: {err}"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = &path {
            self.store(&component, path);
        }
        Ok((component, false))
    }

    fn store(&self, component: &Component, path: &PathBuf) {
        let write = || -> anyhow::Result<()> {
            let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let dir = path.parent().ok_or_else(|| anyhow::anyhow!("no parent"))?;
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.tmp{}", wasm_file_stem(path), std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        };
        if let Err(err) = write() {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {err}");
        }
    }
}

fn wasm_file_stem(path: &std::path::Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
