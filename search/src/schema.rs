//! The index's schema: which field holds what, and the document of a product. The version
//! below is part of every commit; an index written under another version is rebuilt from the
//! compacted topics, never read with the wrong meaning.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{TantivyDocument, Term};

use crate::record::ProductRecord;
use crate::text::{self, ANALYZER, WORDS};

/// Bump when a field, an analyzer or the text normalisation changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// The text fields a query matches, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextField {
    Title,
    Brand,
    Category,
    Attributes,
    Description,
}

impl TextField {
    pub const ALL: [TextField; 5] = [
        TextField::Title,
        TextField::Brand,
        TextField::Category,
        TextField::Attributes,
        TextField::Description,
    ];
}

/// Every field, by what it is for.
#[derive(Debug, Clone)]
pub struct Fields {
    pub schema: Schema,
    /// The product id, untokenised: what an update deletes by.
    pub id: Field,
    /// FNV-1a of the product id: how the popularity prior finds a match.
    pub key: Field,
    pub merchant: Field,
    /// Display values for facets; lower-cased copies for filters.
    pub category: Field,
    pub category_key: Field,
    pub brand: Field,
    pub brand_key: Field,
    /// `name=value`, lower case, one per attribute: filters and facets.
    pub attr: Field,
    /// Minor units.
    pub price: Field,
    pub created: Field,
    /// 1 or 0.
    pub in_stock: Field,
    pub title: Field,
    pub brand_text: Field,
    pub category_text: Field,
    pub attr_text: Field,
    pub description: Field,
    /// Title words unstemmed: corrections and completions are offered in them.
    pub title_words: Field,
    /// The whole record as JSON.
    pub source: Field,
}

impl Fields {
    pub fn new() -> Fields {
        let mut b = Schema::builder();
        let analysed = |positions: bool| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(ANALYZER)
                    .set_index_option(if positions {
                        IndexRecordOption::WithFreqsAndPositions
                    } else {
                        IndexRecordOption::WithFreqs
                    }),
            )
        };
        let id = b.add_text_field("id", STRING);
        let key = b.add_u64_field("key", FAST);
        let merchant = b.add_text_field("merchant", STRING | FAST);
        let category = b.add_text_field("category", STRING | FAST);
        let category_key = b.add_text_field("category_key", STRING);
        let brand = b.add_text_field("brand", STRING | FAST);
        let brand_key = b.add_text_field("brand_key", STRING);
        let attr = b.add_text_field("attr", STRING | FAST);
        let price = b.add_i64_field("price", INDEXED | FAST);
        let created = b.add_i64_field("created", FAST);
        let in_stock = b.add_u64_field("in_stock", INDEXED | FAST);
        let title = b.add_text_field("title", analysed(true));
        let brand_text = b.add_text_field("brand_text", analysed(false));
        let category_text = b.add_text_field("category_text", analysed(false));
        let attr_text = b.add_text_field("attr_text", analysed(false));
        let description = b.add_text_field("description", analysed(false));
        let title_words = b.add_text_field(
            "title_words",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(WORDS)
                    .set_index_option(IndexRecordOption::Basic),
            ),
        );
        let source = b.add_text_field("source", STORED);
        Fields {
            schema: b.build(),
            id,
            key,
            merchant,
            category,
            category_key,
            brand,
            brand_key,
            attr,
            price,
            created,
            in_stock,
            title,
            brand_text,
            category_text,
            attr_text,
            description,
            title_words,
            source,
        }
    }

    pub fn text(&self, field: TextField) -> Field {
        match field {
            TextField::Title => self.title,
            TextField::Brand => self.brand_text,
            TextField::Category => self.category_text,
            TextField::Attributes => self.attr_text,
            TextField::Description => self.description,
        }
    }

    pub fn id_term(&self, product: &model::ProductId) -> Term {
        Term::from_field_text(self.id, product.as_str())
    }

    /// The document of `record`.
    pub fn document(&self, record: &ProductRecord) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.id, record.product_id.as_str());
        doc.add_u64(self.key, product_key(record.product_id.as_str()));
        doc.add_text(self.merchant, record.merchant_id.as_str());
        doc.add_text(self.category, &record.category);
        doc.add_text(self.category_key, record.category.to_lowercase());
        doc.add_text(self.brand, &record.brand);
        doc.add_text(self.brand_key, record.brand.to_lowercase());
        for (name, value) in &record.attributes {
            doc.add_text(self.attr, attr_term(name, value));
        }
        doc.add_i64(self.price, record.price.amount_minor);
        doc.add_i64(self.created, record.created_ms);
        doc.add_u64(self.in_stock, u64::from(record.in_stock()));
        let title = text::normalise_units(&record.title);
        doc.add_text(self.title, &title);
        doc.add_text(self.title_words, &title);
        doc.add_text(self.brand_text, &record.brand);
        doc.add_text(self.category_text, &record.category);
        let attributes: Vec<String> = record
            .attributes
            .values()
            .map(|v| text::normalise_units(v))
            .collect();
        doc.add_text(self.attr_text, attributes.join(" "));
        doc.add_text(self.description, text::normalise_units(&record.description));
        // A record is plain data with string keys: serialising it cannot fail.
        doc.add_text(
            self.source,
            serde_json::to_string(record).unwrap_or_default(),
        );
        doc
    }
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

/// The filter and facet term of one attribute.
pub fn attr_term(name: &str, value: &str) -> String {
    format!("{}={}", name.to_lowercase(), value.to_lowercase())
}

/// FNV-1a of a product id: a stable 64-bit key across restarts and instances.
pub fn product_key(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
