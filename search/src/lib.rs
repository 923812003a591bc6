//! search: a near-real-time tantivy index of the catalog fed from the `catalog` and
//! `inventory` topics, with typo tolerance, filters on category attributes and ranking by
//! popularity, served to the storefront. Nothing is implemented yet.
