//! Which review room a case goes to (CONTRACT §3, §6): by specialist request, then by category,
//! else the default room.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::Category;

/// Review routing from configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRouting {
    /// Room for everything not routed elsewhere.
    pub default_room: String,
    /// Category → room.
    #[serde(default)]
    pub categories: BTreeMap<String, String>,
    /// Keyword found in a specialist request (case-insensitive) → room; first match in key order.
    #[serde(default)]
    pub specialists: BTreeMap<String, String>,
}

impl Default for ReviewRouting {
    fn default() -> Self {
        ReviewRouting {
            default_room: "support-review".into(),
            categories: BTreeMap::new(),
            specialists: BTreeMap::new(),
        }
    }
}

/// A room name is lowercase letters, digits and dashes.
pub fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ReviewRouting {
    /// Checks every room name and category; the error names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_room(&self.default_room) {
            return Err(format!(
                "reviews.default_room: invalid room name {:?}",
                self.default_room
            ));
        }
        for (category, room) in &self.categories {
            if Category::parse(category).is_none() {
                return Err(format!(
                    "reviews.categories.{category}: unknown category (one of {})",
                    Category::choices()
                ));
            }
            if !valid_room(room) {
                return Err(format!(
                    "reviews.categories.{category}: invalid room name {room:?}"
                ));
            }
        }
        for (keyword, room) in &self.specialists {
            if !valid_room(room) {
                return Err(format!(
                    "reviews.specialists.{keyword}: invalid room name {room:?}"
                ));
            }
        }
        Ok(())
    }

    /// The room for a case of `category`, with an optional specialist request.
    pub fn room_for(&self, category: Category, specialist_request: Option<&str>) -> String {
        if let Some(request) = specialist_request {
            let request = request.to_lowercase();
            if let Some((_, room)) = self
                .specialists
                .iter()
                .find(|(keyword, _)| request.contains(&keyword.to_lowercase()))
            {
                return room.clone();
            }
        }
        self.categories
            .get(category.as_str())
            .cloned()
            .unwrap_or_else(|| self.default_room.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialist_beats_category_beats_default() {
        let mut r = ReviewRouting::default();
        r.categories.insert("defect".into(), "engineering".into());
        r.specialists
            .insert("billing".into(), "billing-team".into());
        assert_eq!(r.room_for(Category::Usage, None), "support-review");
        assert_eq!(r.room_for(Category::Defect, None), "engineering");
        assert_eq!(
            r.room_for(Category::Defect, Some("Need BILLING help")),
            "billing-team"
        );
        assert!(r.validate().is_ok());
        r.categories.insert("nope".into(), "x".into());
        assert!(
            r.validate()
                .unwrap_err()
                .contains("reviews.categories.nope")
        );
    }
}
