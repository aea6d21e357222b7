use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// One path component that is safe inside the store: ASCII letters, digits, `.`, `_`, `+`
/// and `-`, not starting with `.` or `-` (so never `..`, never hidden like the store's own
/// temporary files, never read as an option), at most 255 bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(pub(crate) String);

impl FileName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FileName {
    type Err = StoreError;
    fn from_str(name: &str) -> Result<Self, StoreError> {
        let refuse = |rule| StoreError::FileName {
            name: name.chars().take(80).collect(),
            rule,
        };
        if name.is_empty() || name.len() > 255 {
            return Err(refuse("must be 1 to 255 bytes"));
        }
        if name.starts_with(['.', '-']) {
            return Err(refuse("must not start with '.' or '-'"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        {
            return Err(refuse(
                "may only contain ASCII letters, digits, '.', '_', '+' and '-'",
            ));
        }
        Ok(Self(name.to_owned()))
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<std::path::Path> for FileName {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}
