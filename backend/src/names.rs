//! Names that come from uploads (the client's file name), made safe to show: no control
//! characters, and none of the invisible format characters (bidirectional overrides and
//! isolates, zero-width spaces and joiners, tags) that let one name display as another.

/// Longest name kept, in characters.
const MAX_CHARS: usize = 255;

/// Unicode's format characters (general category Cf) and the line and paragraph
/// separators: nothing a file name needs, all of them invisible or reordering.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{2028}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether a character may appear in a shown name.
fn shown(c: char) -> bool {
    !c.is_control()
        && !INVISIBLE
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&c))
}

/// The client's file name, for display and storage: the last path component, without
/// control and invisible characters, at most 255 characters; `model.pt` when nothing is
/// left.
pub fn display_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|&c| shown(c)).take(MAX_CHARS).collect();
    if clean.trim().is_empty() {
        "model.pt".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_drop_paths_and_controls() {
        assert_eq!(display_name("C:\\runs\\best.pt"), "best.pt");
        assert_eq!(display_name("../x\n.pt"), "x.pt");
        assert_eq!(display_name(""), "model.pt");
    }

    #[test]
    fn display_names_drop_bidi_and_zero_width_characters() {
        // With the override, a browser shows "mé" then "txt.pt" backwards: "métp.txt".
        assert_eq!(display_name("m\u{e9}\u{202e}txt.pt"), "m\u{e9}txt.pt");
        assert_eq!(
            display_name("be\u{200b}st\u{200d}.\u{2066}pt\u{2069}\u{feff}"),
            "best.pt"
        );
        assert_eq!(display_name("a\u{061c}b\u{200f}\u{2028}.pt"), "ab.pt");
        assert_eq!(display_name("\u{e0041}\u{e0042}.pt"), ".pt");
        assert_eq!(display_name("\u{202e}\u{200b}"), "model.pt");
        // Letters of every script stay.
        assert_eq!(display_name("модель-模型.pt"), "модель-模型.pt");
    }
}
