//! Product text as the index and the queries both see it: quantities written one way
//! (`1kg`, `1 kg` and `1000 g` are all `1000g`), one analyzer (words, lower case, accents
//! folded, English stems), the typo budget by word length, and the vocabulary of synonyms and
//! stop words a deployment and each shop configure.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use model::MerchantId;
use serde::Deserialize;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer,
};

use crate::SearchError;

/// The analyzer of every text field, registered on the index under this name.
pub const ANALYZER: &str = "product";
/// Words without stemming: what corrections and completions offer back to people.
pub const WORDS: &str = "product_words";

/// Tokens longer than this are noise (pasted URLs, ids), not words anyone searches for.
const LONGEST_WORD: usize = 40;

pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(LONGEST_WORD))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(Language::English))
        .build()
}

pub fn words_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(LONGEST_WORD))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The terms `analyzer` makes of `text`, in order.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// How many typos a word of `len` characters may carry and still match (Meilisearch's rule):
/// none below 5 letters, one from 5, two from 9.
pub fn typo_budget(len: usize) -> u8 {
    match len {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Levenshtein distance with adjacent transpositions counted as one edit (the metric the
/// index's automata use), for weighting the terms a word expanded to.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// A unit a quantity may be written in, and how it is written canonically.
struct Unit {
    names: &'static [&'static str],
    canonical: &'static str,
    factor: f64,
}

const UNITS: &[Unit] = &[
    Unit {
        names: &["g", "gm", "gms", "gr", "gram", "grams", "gramme", "grammes"],
        canonical: "g",
        factor: 1.0,
    },
    Unit {
        names: &["kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"],
        canonical: "g",
        factor: 1000.0,
    },
    Unit {
        names: &[
            "ml",
            "mls",
            "millilitre",
            "millilitres",
            "milliliter",
            "milliliters",
        ],
        canonical: "ml",
        factor: 1.0,
    },
    Unit {
        names: &["l", "ltr", "ltrs", "litre", "litres", "liter", "liters"],
        canonical: "ml",
        factor: 1000.0,
    },
    Unit {
        names: &["mb"],
        canonical: "mb",
        factor: 1.0,
    },
    Unit {
        names: &["gb"],
        canonical: "gb",
        factor: 1.0,
    },
    Unit {
        names: &["tb"],
        canonical: "gb",
        factor: 1024.0,
    },
    Unit {
        names: &["mah"],
        canonical: "mah",
        factor: 1.0,
    },
];

/// `text` with every quantity and unit written canonically (`1.5 kg` -> `1500g`, `500 ML` ->
/// `500ml`, `1 TB` -> `1024gb`), so a shopper's `1kg` finds a title's `1000 g`. Everything
/// else is left as it was.
pub fn normalise_units(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'));
        if starts_number && let Some((canonical, end)) = quantity_at(text, i) {
            out.push_str(&canonical);
            i = end;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The quantity starting at byte `start` (a number, optional spaces, a known unit ending at a
/// word boundary) written canonically, and where it ends.
fn quantity_at(text: &str, start: usize) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    let number: f64 = text[start..i].parse().ok()?;
    let mut j = i;
    while j < bytes.len() && bytes[j] == b' ' {
        j += 1;
    }
    let unit_start = j;
    while j < bytes.len() && bytes[j].is_ascii_alphabetic() {
        j += 1;
    }
    if j == unit_start || (j < bytes.len() && bytes[j].is_ascii_digit()) {
        return None;
    }
    let name = text[unit_start..j].to_ascii_lowercase();
    let unit = UNITS.iter().find(|u| u.names.contains(&name.as_str()))?;
    let value = number * unit.factor;
    let value = if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value}")
    };
    Some((format!("{value}{}", unit.canonical), j))
}

/// A vocabulary as written in the file: global lists and each shop's additions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabularyFile {
    #[serde(default)]
    stop_words: Vec<String>,
    #[serde(default)]
    synonyms: Vec<Vec<String>>,
    #[serde(default)]
    merchant: BTreeMap<String, Lists>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lists {
    #[serde(default)]
    stop_words: Vec<String>,
    #[serde(default)]
    synonyms: Vec<Vec<String>>,
}

/// Stop words and synonym groups: the platform's, and each shop's on top.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    global: Words,
    merchants: HashMap<MerchantId, Words>,
}

#[derive(Debug, Clone, Default)]
struct Words {
    stop: std::collections::HashSet<String>,
    /// Each word's group, by the word.
    synonyms: HashMap<String, Vec<String>>,
}

impl Words {
    fn from(lists: &Lists, what: &str) -> Result<Words, String> {
        let mut words = Words::default();
        for word in &lists.stop_words {
            words.stop.insert(word.to_lowercase());
        }
        for (n, group) in lists.synonyms.iter().enumerate() {
            let group: Vec<String> = group.iter().map(|w| w.trim().to_lowercase()).collect();
            if group.len() < 2 {
                return Err(format!(
                    "{what} synonyms group {} has fewer than two words",
                    n + 1
                ));
            }
            if let Some(bad) = group
                .iter()
                .find(|w| w.is_empty() || !w.chars().all(char::is_alphanumeric))
            {
                return Err(format!(
                    "{what} synonyms group {}: {bad:?} is not a single word of letters and digits",
                    n + 1
                ));
            }
            for word in &group {
                words
                    .synonyms
                    .entry(word.clone())
                    .or_default()
                    .extend(group.iter().filter(|w| *w != word).cloned());
            }
        }
        Ok(words)
    }
}

/// The vocabulary shipped with shopstream.
pub const DEFAULT_VOCABULARY: &str = include_str!("../data/vocabulary.toml");

impl Vocabulary {
    pub fn parse(text: &str, source: &str) -> Result<Vocabulary, SearchError> {
        let bad = |message: String| SearchError::Config(format!("{source}: {message}"));
        let file: VocabularyFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let global = Words::from(
            &Lists {
                stop_words: file.stop_words,
                synonyms: file.synonyms,
            },
            "the global",
        )
        .map_err(bad)?;
        let mut merchants = HashMap::new();
        for (merchant, lists) in &file.merchant {
            let words = Words::from(lists, &format!("merchant {merchant:?}")).map_err(bad)?;
            merchants.insert(MerchantId::new(merchant.clone()), words);
        }
        Ok(Vocabulary { global, merchants })
    }

    /// The file at `path`, or the shipped vocabulary.
    pub fn load(path: Option<&Path>) -> Result<Vocabulary, SearchError> {
        match path {
            None => Vocabulary::parse(DEFAULT_VOCABULARY, "the shipped vocabulary"),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SearchError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                Vocabulary::parse(&text, &path.display().to_string())
            }
        }
    }

    pub fn is_stop_word(&self, word: &str, merchant: Option<&MerchantId>) -> bool {
        self.global.stop.contains(word)
            || merchant
                .and_then(|m| self.merchants.get(m))
                .is_some_and(|w| w.stop.contains(word))
    }

    /// The other words of `word`'s synonym groups, the shop's after the platform's.
    pub fn synonyms(&self, word: &str, merchant: Option<&MerchantId>) -> Vec<String> {
        let mut out: Vec<String> = self.global.synonyms.get(word).cloned().unwrap_or_default();
        if let Some(extra) = merchant
            .and_then(|m| self.merchants.get(m))
            .and_then(|w| w.synonyms.get(word))
        {
            out.extend(extra.iter().cloned());
        }
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_written_one_way() {
        assert_eq!(normalise_units("Atta 1kg"), "Atta 1000g");
        assert_eq!(normalise_units("atta 1 kg"), "atta 1000g");
        assert_eq!(normalise_units("atta 1000 g pack"), "atta 1000g pack");
        assert_eq!(normalise_units("Ghee 1.5 L"), "Ghee 1500ml");
        assert_eq!(normalise_units("128 GB, 1 TB"), "128gb, 1024gb");
        // Not quantities: a model number, a size, a word that starts like a unit.
        assert_eq!(normalise_units("A15 size 8 large"), "A15 size 8 large");
        assert_eq!(normalise_units("5 glasses"), "5 glasses");
    }

    #[test]
    fn typo_budget_follows_word_length() {
        assert_eq!(typo_budget(4), 0);
        assert_eq!(typo_budget(5), 1);
        assert_eq!(typo_budget(8), 1);
        assert_eq!(typo_budget(9), 2);
        assert_eq!(edit_distance("kurta", "kutra"), 1);
        assert_eq!(edit_distance("saree", "sari"), 2);
    }

    #[test]
    fn analyzer_stems_and_folds() {
        let mut a = analyzer();
        assert_eq!(
            terms(&mut a, "Kurtas, CHAPPALS & Sarées"),
            ["kurta", "chappal", "sare"]
        );
        assert_eq!(terms(&mut a, "saree"), terms(&mut a, "sarees"));
    }

    #[test]
    fn shipped_vocabulary_parses_and_shops_add_to_it() {
        let v = Vocabulary::load(None).unwrap();
        assert!(v.synonyms("sari", None).contains(&"saree".to_owned()));
        assert!(v.is_stop_word("for", None));
        let custom = Vocabulary::parse(
            "synonyms = [[\"mobile\", \"phone\"]]\n[merchant.\"m-1\"]\nsynonyms = [[\"phone\", \"handset\"]]\nstop_words = [\"original\"]",
            "test",
        )
        .unwrap();
        let m1 = MerchantId::new("m-1");
        assert_eq!(custom.synonyms("phone", Some(&m1)), ["mobile", "handset"]);
        assert_eq!(custom.synonyms("phone", None), ["mobile"]);
        assert!(custom.is_stop_word("original", Some(&m1)));
        assert!(!custom.is_stop_word("original", None));
        let error = Vocabulary::parse("synonyms = [[\"t shirt\", \"tee\"]]", "v.toml").unwrap_err();
        assert!(error.to_string().contains("v.toml"), "{error}");
    }
}
