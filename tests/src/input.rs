//! A byte reader for fuzz inputs: fixed-width little-endian reads that yield
//! zeros once the input is used up, so every input decodes to something.

/// Reads numbers off a fuzz input.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }
}

/// Runs `run` on every input checked in under `tests/corpus/<target>` (not
/// its README), each under `catch_unwind`, naming the file that failed.
///
/// # Panics
/// If an input fails, or the directory holds none.
pub fn replay_corpus(target: &str, run: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    replay_corpus_dir(&dir, run);
}

/// [`replay_corpus`] over any directory.
///
/// # Panics
/// If an input fails, or the directory holds none.
pub fn replay_corpus_dir(dir: &std::path::Path, run: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("corpus directory") {
        let path = e.expect("corpus entry").path();
        if path.extension().is_some_and(|x| x == "md") {
            continue;
        }
        let data = std::fs::read(&path).expect("corpus input");
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "corpus input {} failed", path.display());
        n += 1;
    }
    assert!(n > 0, "no corpus inputs in {}", dir.display());
}
