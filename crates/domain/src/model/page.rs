use serde::Serialize;

use super::InvalidValue;

/// How many items a list returns: 1 to 100, 20 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub const MAX: u32 = 100;
    pub const DEFAULT: Limit = Limit(20);

    pub fn new(n: i64) -> Result<Self, InvalidValue> {
        if n < 1 || n > i64::from(Self::MAX) {
            return Err(InvalidValue::new(format!(
                "must be an integer from 1 to {}",
                Self::MAX
            )));
        }
        Ok(Self(n as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A request for one page of a list ordered by `C`, starting after the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<C> {
    pub after: Option<C>,
    pub limit: Limit,
}

/// One page of a list, and the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from up to `limit + 1` items fetched in order: the extra item,
    /// when present, only tells that there is a next page.
    pub fn from_overfetch(mut items: Vec<T>, limit: Limit, cursor_of: impl Fn(&T) -> C) -> Self {
        let limit = limit.get() as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(&cursor_of)
        } else {
            None
        };
        Self { items, next }
    }
}
