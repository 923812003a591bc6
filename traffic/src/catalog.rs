//! Categories with their attribute schemas, and the vocabulary products are named from.

/// A product category: what its products are called, who makes them, what they cost and which
/// attributes describe them.
#[derive(Debug)]
pub struct Category {
    pub name: &'static str,
    pub nouns: &'static [&'static str],
    pub adjectives: &'static [&'static str],
    pub brands: &'static [&'static str],
    /// Price range in whole rupees.
    pub price_rupees: (i64, i64),
    /// Attribute name and its allowed values: the category's attribute schema.
    pub attributes: &'static [(&'static str, &'static [&'static str])],
}

pub const CATEGORIES: &[Category] = &[
    Category {
        name: "apparel",
        nouns: &[
            "Kurta", "Saree", "T-Shirt", "Jeans", "Dupatta", "Shirt", "Lehenga", "Hoodie",
        ],
        adjectives: &[
            "Indigo",
            "Block Print",
            "Slim Fit",
            "Handloom",
            "Cotton",
            "Linen",
            "Silk",
        ],
        brands: &[
            "Kalaa",
            "Fabindia Lane",
            "Biba Street",
            "Urban Loom",
            "Chikan House",
        ],
        price_rupees: (299, 4999),
        attributes: &[
            ("size", &["XS", "S", "M", "L", "XL", "XXL"]),
            (
                "colour",
                &["indigo", "maroon", "mustard", "white", "black", "teal"],
            ),
            ("fabric", &["cotton", "linen", "silk", "rayon", "khadi"]),
        ],
    },
    Category {
        name: "electronics",
        nouns: &[
            "Smartphone",
            "Earbuds",
            "Power Bank",
            "Smartwatch",
            "Bluetooth Speaker",
            "Tablet",
        ],
        adjectives: &["5G", "Pro", "Lite", "Max", "Neo", "Wireless"],
        brands: &["Voltix", "Nexa", "Boatline", "Lumio", "Redwave"],
        price_rupees: (699, 49_999),
        attributes: &[
            ("ram", &["4 GB", "6 GB", "8 GB", "12 GB"]),
            ("storage", &["64 GB", "128 GB", "256 GB"]),
            ("colour", &["black", "blue", "silver", "green"]),
        ],
    },
    Category {
        name: "grocery",
        nouns: &[
            "Basmati Rice",
            "Toor Dal",
            "Ghee",
            "Masala Chai",
            "Atta",
            "Jaggery",
            "Honey",
        ],
        adjectives: &[
            "Organic",
            "Premium",
            "Farm Fresh",
            "Stone Ground",
            "Classic",
        ],
        brands: &[
            "Annapurna Farms",
            "Desi Kitchen",
            "Gaon Fresh",
            "Mother Earth",
        ],
        price_rupees: (49, 1299),
        attributes: &[
            ("weight", &["250 g", "500 g", "1 kg", "5 kg"]),
            ("diet", &["veg", "vegan"]),
        ],
    },
    Category {
        name: "home",
        nouns: &[
            "Bedsheet",
            "Pressure Cooker",
            "Kadai",
            "Cushion Cover",
            "Water Bottle",
            "Lamp",
        ],
        adjectives: &[
            "Steel",
            "Jaipuri",
            "Non-Stick",
            "Brass",
            "Handcrafted",
            "Ceramic",
        ],
        brands: &["Ghar Sansar", "Prestige Lane", "Craftwala", "Jaipur Living"],
        price_rupees: (199, 7999),
        attributes: &[
            (
                "material",
                &["cotton", "steel", "brass", "ceramic", "aluminium"],
            ),
            ("colour", &["red", "blue", "gold", "white", "multicolour"]),
        ],
    },
    Category {
        name: "beauty",
        nouns: &[
            "Face Wash",
            "Kajal",
            "Hair Oil",
            "Sunscreen",
            "Lipstick",
            "Ubtan",
        ],
        adjectives: &[
            "Ayurvedic",
            "Herbal",
            "Matte",
            "SPF 50",
            "Kumkumadi",
            "Neem",
        ],
        brands: &["Vana", "Kama Glow", "Biotique Lane", "Mamaearth Co"],
        price_rupees: (99, 1999),
        attributes: &[
            ("skin_type", &["oily", "dry", "normal", "sensitive"]),
            ("volume", &["50 ml", "100 ml", "200 ml"]),
        ],
    },
    Category {
        name: "footwear",
        nouns: &[
            "Kolhapuri Chappal",
            "Sneakers",
            "Juttis",
            "Sandals",
            "Running Shoes",
        ],
        adjectives: &[
            "Leather",
            "Embroidered",
            "Lightweight",
            "Cushioned",
            "Classic",
        ],
        brands: &["Paduka", "Stride", "Mochi Works", "Runwell"],
        price_rupees: (399, 5999),
        attributes: &[
            ("size", &["6", "7", "8", "9", "10", "11"]),
            ("colour", &["tan", "black", "white", "brown"]),
        ],
    },
    Category {
        name: "books",
        nouns: &[
            "Novel",
            "Cookbook",
            "Exam Guide",
            "Poetry Collection",
            "Comic",
        ],
        adjectives: &[
            "Bestselling",
            "Illustrated",
            "Hindi",
            "Tamil",
            "Bengali",
            "Revised",
        ],
        brands: &[
            "Penguin Lane",
            "Rupa Press",
            "Westland House",
            "Arihant Books",
        ],
        price_rupees: (99, 999),
        attributes: &[
            (
                "language",
                &["English", "Hindi", "Tamil", "Bengali", "Marathi"],
            ),
            ("format", &["paperback", "hardcover"]),
        ],
    },
    Category {
        name: "toys",
        nouns: &[
            "Building Blocks",
            "Puzzle",
            "Board Game",
            "Soft Toy",
            "RC Car",
        ],
        adjectives: &["Wooden", "Educational", "Channapatna", "Glow", "Classic"],
        brands: &["Khilona", "Funskool Lane", "Playbox", "Chanda Toys"],
        price_rupees: (149, 2999),
        attributes: &[("age_group", &["0-2", "3-5", "6-8", "9-12", "teen"])],
    },
];
