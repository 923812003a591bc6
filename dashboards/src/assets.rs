//! Every script, style and licence the pages use, compiled into the binary
//! (`include_bytes!`): the pages need nothing beyond it. Each is served under a name carrying
//! the first 12 hex digits of its SHA-256, so it is cached as immutable and a new build's
//! file is a new address; gzip copies are made once, at start, for browsers that take them.
//! The fonts' `@font-face` rules (`fonts.css`) are written at start, naming the fonts' hashed
//! addresses. Noto Sans Devanagari draws Hindi (and ₹) where the machine has no such font.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

/// `(logical name, content type, bytes)`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "htmx.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "uplot.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot-1.6.32.iife.min.js"),
    ),
    (
        "uplot.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot-1.6.32.min.css"),
    ),
    (
        "echarts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/echarts-6.1.0.min.js"),
    ),
    (
        "dash.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dash.js"),
    ),
    (
        "dash.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dash.css"),
    ),
    (
        "devanagari-400.woff2",
        "font/woff2",
        include_bytes!("../assets/vendor/noto-sans-devanagari-devanagari-400-normal.woff2"),
    ),
    (
        "devanagari-700.woff2",
        "font/woff2",
        include_bytes!("../assets/vendor/noto-sans-devanagari-devanagari-700-normal.woff2"),
    ),
    (
        "latin-400.woff2",
        "font/woff2",
        include_bytes!("../assets/vendor/noto-sans-devanagari-latin-400-normal.woff2"),
    ),
    (
        "latin-700.woff2",
        "font/woff2",
        include_bytes!("../assets/vendor/noto-sans-devanagari-latin-700-normal.woff2"),
    ),
    (
        "licenses.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/licenses/ALL.txt"),
    ),
];

#[derive(Debug)]
struct Asset {
    content_type: &'static str,
    plain: Cow<'static, [u8]>,
    gzip: Vec<u8>,
}

/// The unicode ranges of the two font subsets (as Fontsource publishes them).
const DEVANAGARI_RANGE: &str = "U+0900-097F,U+1CD0-1CF9,U+200C-200D,U+20A8,U+20B9,U+20F0,U+25CC,U+A830-A839,U+A8E0-A8FF,U+11B00-11B09";
const LATIN_RANGE: &str = "U+0000-00FF,U+0131,U+0152-0153,U+02BB-02BC,U+02C6,U+02DA,U+02DC,U+0304,U+0308,U+0329,U+2000-206F,U+20AC,U+2122,U+2191,U+2193,U+2212,U+2215,U+FEFF,U+FFFD";

/// The embedded files by their hashed names, and the hashed name of each logical one.
#[derive(Debug)]
pub struct Assets {
    by_address: HashMap<String, Asset>,
    address_of: HashMap<&'static str, String>,
}

impl Assets {
    fn build() -> Assets {
        let mut assets = Assets {
            by_address: HashMap::new(),
            address_of: HashMap::new(),
        };
        for (name, content_type, plain) in FILES {
            assets.add(name, content_type, Cow::Borrowed(plain));
        }
        let mut fonts = String::new();
        for (subset, range) in [("devanagari", DEVANAGARI_RANGE), ("latin", LATIN_RANGE)] {
            for weight in [400, 700] {
                let url = assets.url(&format!("{subset}-{weight}.woff2")).to_owned();
                fonts.push_str(&format!(
                    "@font-face {{ font-family: 'Noto Sans Devanagari'; font-style: normal; \
                     font-display: swap; font-weight: {weight}; src: url({url}) format('woff2'); \
                     unicode-range: {range}; }}\n"
                ));
            }
        }
        assets.add(
            "fonts.css",
            "text/css; charset=utf-8",
            Cow::Owned(fonts.into_bytes()),
        );
        assets
    }

    fn add(&mut self, name: &'static str, content_type: &'static str, plain: Cow<'static, [u8]>) {
        let digest = Sha256::digest(&plain);
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
        let address = format!("{stem}.{hash}.{extension}");
        // Fonts are compressed already.
        let gzip = if content_type.starts_with("font/") {
            Vec::new()
        } else {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
            std::io::Write::write_all(&mut encoder, &plain)
                .and_then(|()| encoder.finish())
                .unwrap_or_default()
        };
        self.address_of.insert(name, format!("/assets/{address}"));
        self.by_address.insert(
            address,
            Asset {
                content_type,
                plain,
                gzip,
            },
        );
    }

    /// The process's assets, built on first use.
    pub fn get() -> &'static Assets {
        static ASSETS: OnceLock<Assets> = OnceLock::new();
        ASSETS.get_or_init(Assets::build)
    }

    /// The address of logical file `name` (`dash.js`), for a page's links.
    pub fn url(&self, name: &str) -> &str {
        self.address_of
            .get(name)
            .map_or("/assets/missing", String::as_str)
    }

    /// Bytes one page loads of `names`, as sent to a browser that takes gzip.
    pub fn weight(&self, names: &[&str]) -> (usize, usize) {
        names
            .iter()
            .filter_map(|name| {
                let address = self.address_of.get(name)?.strip_prefix("/assets/")?;
                self.by_address.get(address)
            })
            .fold((0, 0), |(plain, gzip), asset| {
                let sent = if asset.gzip.is_empty() {
                    asset.plain.len()
                } else {
                    asset.gzip.len()
                };
                (plain + asset.plain.len(), gzip + sent)
            })
    }
}

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let assets = Assets::get();
    let Some(asset) = assets.by_address.get(&file) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let takes_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|coding| coding.trim().starts_with("gzip"))
        });
    let immutable = "public, max-age=31536000, immutable";
    if takes_gzip && !asset.gzip.is_empty() {
        (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, immutable),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "accept-encoding"),
            ],
            asset.gzip.clone(),
        )
            .into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, immutable),
                (header::VARY, "accept-encoding"),
            ],
            asset.plain.clone().into_owned(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_rules_name_the_fonts_hashed_addresses() {
        let assets = Assets::get();
        let address = assets.url("fonts.css").trim_start_matches("/assets/");
        let css = String::from_utf8_lossy(&assets.by_address[address].plain).into_owned();
        assert_eq!(css.matches("@font-face").count(), 4);
        assert!(css.contains(assets.url("devanagari-700.woff2")), "{css}");
    }

    #[test]
    fn every_file_has_a_hashed_address_and_a_smaller_gzip_copy() {
        let assets = Assets::get();
        for (name, _, plain) in FILES {
            let url = assets.url(name);
            assert!(
                url.starts_with("/assets/") && url.len() > name.len() + 12,
                "{url}"
            );
            let asset = &assets.by_address[url.trim_start_matches("/assets/")];
            if !name.ends_with(".woff2") {
                assert!(asset.gzip.len() < plain.len(), "{name} compresses");
            }
        }
    }
}
