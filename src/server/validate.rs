//! Request validation at the gRPC boundary: sizes, emptiness and enum values, checked before
//! any work is done. Produces [`FieldViolation`]s naming the field (with the item index for
//! batches) and the limit.

use super::config::MAX_ID_BYTES;
use super::pb;
use super::status::FieldViolation;
use crate::labels::Lang;

/// The limits requests are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest statement in UTF-8 bytes.
    pub max_text_bytes: usize,
    /// Most items in a batch.
    pub max_batch_size: usize,
}

/// The checked fields of one statement request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidItem {
    /// The caller's language, if given.
    pub language_hint: Option<Lang>,
    /// Whether token contributions are wanted.
    pub explain: bool,
}

/// Checks one statement. Field names are relative to the statement (`text`, `id`,
/// `language`); the caller places them in the request (`items[3].text`).
pub fn item(
    limits: &Limits,
    id: &str,
    text: &str,
    language: i32,
    explain: bool,
) -> Result<ValidItem, Vec<FieldViolation>> {
    let mut v = Vec::new();
    if id.len() > MAX_ID_BYTES {
        v.push(FieldViolation::new(
            "id",
            format!(
                "id is {} bytes, the limit is {MAX_ID_BYTES} bytes",
                id.len()
            ),
        ));
    }
    if text.len() > limits.max_text_bytes {
        v.push(FieldViolation::new(
            "text",
            format!(
                "text is {} bytes, the limit is {} bytes",
                text.len(),
                limits.max_text_bytes
            ),
        ));
    } else if text.trim().is_empty() {
        v.push(FieldViolation::new(
            "text",
            "text is empty or whitespace only",
        ));
    }
    let language_hint = match language_from_pb(language) {
        Ok(l) => l,
        Err(_) => {
            v.push(FieldViolation::new(
                "language",
                format!("{language} is not a Language value"),
            ));
            None
        }
    };
    if v.is_empty() {
        Ok(ValidItem {
            language_hint,
            explain,
        })
    } else {
        Err(v)
    }
}

/// Checks the size of a batch.
pub fn batch_len(limits: &Limits, len: usize) -> Result<(), FieldViolation> {
    if len > limits.max_batch_size {
        Err(FieldViolation::new(
            "items",
            format!(
                "batch has {len} items, the limit is {}",
                limits.max_batch_size
            ),
        ))
    } else {
        Ok(())
    }
}

/// The core's language for a wire value; `Ok(None)` for LANGUAGE_UNSPECIFIED, `Err(v)` for a
/// value that is not a `Language`.
pub fn language_from_pb(v: i32) -> Result<Option<Lang>, i32> {
    match pb::Language::try_from(v).map_err(|_| v)? {
        pb::Language::Unspecified => Ok(None),
        pb::Language::ZhHans => Ok(Some(Lang::ZhHans)),
        pb::Language::ZhHant => Ok(Some(Lang::ZhHant)),
        pb::Language::En => Ok(Some(Lang::En)),
        pb::Language::Mixed => Ok(Some(Lang::Mixed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_text_bytes: 10,
        max_batch_size: 2,
    };

    #[test]
    fn checks_text_id_and_language() {
        assert!(item(&L, "a", "价格", 0, false).is_ok());
        let e = item(&L, "a", "  \n", 0, false).unwrap_err();
        assert_eq!(e[0].field, "text");
        let e = item(&L, "a", "01234567890", 0, false).unwrap_err();
        assert!(e[0].description.contains("limit is 10 bytes"));
        let e = item(&L, &"x".repeat(300), "ok", 99, false).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].field, "language");
        assert_eq!(
            item(&L, "", "hi", pb::Language::ZhHant as i32, true)
                .unwrap()
                .language_hint,
            Some(Lang::ZhHant)
        );
    }

    #[test]
    fn checks_batch_size() {
        assert!(batch_len(&L, 2).is_ok());
        assert!(batch_len(&L, 3)
            .unwrap_err()
            .description
            .contains("limit is 2"));
        assert!(batch_len(&L, 0).is_ok());
    }
}
