//! Finding lines in a test's own source, for checking reported locations.

/// The 1-based line of `src` holding `needle`, which must occur on exactly
/// one line (lines that call `line_of` itself are skipped).
///
/// # Panics
/// If `needle` is on no line or on several.
pub fn line_of(src: &str, needle: &str) -> u32 {
    let found: Vec<usize> = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle) && !l.contains("line_of("))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{needle:?} on lines {found:?}");
    found[0] as u32
}
