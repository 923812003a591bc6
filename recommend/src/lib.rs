//! recommend: product recommendations from co-visitation counts and approximate nearest
//! neighbours (arroy) over product embeddings, served to the storefront. Nothing is
//! implemented yet.
