//! JSON objects at the speed of the analysis, one per row of columns: the report of a million
//! sweeps takes most of a minute through Python's `json` module and dicts, and a second here.
//! The text is exactly what `json.dumps(row)` writes (default separators, `ensure_ascii`).

use rayon::prelude::*;

use crate::csv::push_repr;
use crate::error::{Error, Result};

/// A field of every row: an object of fields, or a column of values (one per row).
#[derive(Debug, Clone, PartialEq)]
pub enum JsonField {
    /// Keys and their fields, in order.
    Object(Vec<(String, JsonField)>),
    /// Strings; `None` is `null`.
    Text(Vec<Option<String>>),
    /// Numbers as Python's `repr`; NaN and infinities (lrfind's "none") are `null`.
    Float(Vec<f64>),
    /// Whole numbers; negative values (lrfind's "no index") are `null`.
    Int(Vec<i64>),
    /// `true` or `false`.
    Bool(Vec<bool>),
    /// `[low, high]`, or `null` unless both are finite.
    Pair(Vec<f64>, Vec<f64>),
}

impl JsonField {
    /// The number of rows of every column below, checked to be the same (`where_` names the
    /// field for the error); `None` for an object without columns.
    fn rows(&self, where_: &str) -> Result<Option<usize>> {
        let len = match self {
            JsonField::Object(fields) => {
                let mut rows = None;
                for (key, field) in fields {
                    let path = format!("{where_}[{key:?}]");
                    match (rows, field.rows(&path)?) {
                        (Some(a), Some(b)) if a != b => {
                            return Err(Error::Param {
                                name: "fields",
                                expected: "columns of one length",
                                value: format!("{b} rows in {path} against {a}"),
                            })
                        }
                        (None, b) => rows = b,
                        _ => {}
                    }
                }
                return Ok(rows);
            }
            JsonField::Text(v) => v.len(),
            JsonField::Float(v) => v.len(),
            JsonField::Int(v) => v.len(),
            JsonField::Bool(v) => v.len(),
            JsonField::Pair(low, high) if low.len() == high.len() => low.len(),
            JsonField::Pair(low, high) => {
                return Err(Error::Param {
                    name: "fields",
                    expected: "pairs of two ends of one length",
                    value: format!("{} and {} rows in {where_}", low.len(), high.len()),
                })
            }
        };
        Ok(Some(len))
    }

    fn write(&self, row: usize, out: &mut String, floats: &mut ryu::Buffer, ints: &mut itoa::Buffer) {
        match self {
            JsonField::Object(fields) => {
                out.push('{');
                for (j, (key, field)) in fields.iter().enumerate() {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    push_string(out, key);
                    out.push_str(": ");
                    field.write(row, out, floats, ints);
                }
                out.push('}');
            }
            JsonField::Text(v) => match &v[row] {
                Some(text) => push_string(out, text),
                None => out.push_str("null"),
            },
            JsonField::Float(v) => push_number(out, v[row], floats),
            JsonField::Int(v) if v[row] >= 0 => out.push_str(ints.format(v[row])),
            JsonField::Int(_) => out.push_str("null"),
            JsonField::Bool(v) => out.push_str(if v[row] { "true" } else { "false" }),
            JsonField::Pair(low, high) if low[row].is_finite() && high[row].is_finite() => {
                out.push('[');
                push_repr(out, low[row], floats);
                out.push_str(", ");
                push_repr(out, high[row], floats);
                out.push(']');
            }
            JsonField::Pair(..) => out.push_str("null"),
        }
    }
}

/// Rows per parallel task: large enough to amortise the scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 2048;

/// Row `i` of `object`'s columns as one JSON object, for every row, each written as
/// `prefix + object + end`, in consecutive blocks of rows (one per parallel task).
pub fn json_blocks(object: &[(String, JsonField)], prefix: &str, end: &str) -> Result<Vec<String>> {
    let object = JsonField::Object(object.to_vec());
    let rows = object.rows("fields")?.unwrap_or(0);
    let starts: Vec<usize> = (0..rows).step_by(ROWS_PER_TASK).collect();
    Ok(starts
        .into_par_iter()
        .map(|first| {
            let last = (first + ROWS_PER_TASK).min(rows);
            let mut out = String::with_capacity((last - first) * 512);
            let (mut floats, mut ints) = (ryu::Buffer::new(), itoa::Buffer::new());
            for row in first..last {
                out.push_str(prefix);
                object.write(row, &mut out, &mut floats, &mut ints);
                out.push_str(end);
            }
            out
        })
        .collect())
}

fn push_number(out: &mut String, x: f64, floats: &mut ryu::Buffer) {
    if x.is_finite() {
        push_repr(out, x, floats);
    } else {
        out.push_str("null");
    }
}

/// `text` as `json.dumps` writes a str (`ensure_ascii`): quoted; `"`, `\` and the control
/// characters with a short escape escaped so; every other character outside printable ASCII as
/// `\u` and four lowercase hex digits, beyond the BMP as a surrogate pair.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(object: Vec<(&str, JsonField)>) -> String {
        let object: Vec<(String, JsonField)> = object.into_iter().map(|(k, f)| (k.to_string(), f)).collect();
        json_blocks(&object, "", "\n").unwrap().concat()
    }

    #[test]
    fn values_as_json_dumps_writes_them() {
        let text = |s: &str| JsonField::Text(vec![Some(s.to_string())]);
        assert_eq!(
            one(vec![("a", text("x\"y\\z\n\t\u{1}é😀\u{7f}"))]),
            "{\"a\": \"x\\\"y\\\\z\\n\\t\\u0001\\u00e9\\ud83d\\ude00\\u007f\"}\n"
        );
        assert_eq!(
            one(vec![
                ("f", JsonField::Float(vec![1e-5])),
                ("n", JsonField::Float(vec![f64::NAN])),
                ("i", JsonField::Int(vec![-1])),
                ("b", JsonField::Bool(vec![true])),
                ("p", JsonField::Pair(vec![0.5], vec![2.0])),
                ("q", JsonField::Pair(vec![0.5], vec![f64::INFINITY])),
                ("t", JsonField::Text(vec![None])),
                ("o", JsonField::Object(vec![("k".into(), JsonField::Int(vec![7]))])),
            ]),
            "{\"f\": 1e-05, \"n\": null, \"i\": null, \"b\": true, \"p\": [0.5, 2.0], \"q\": null, \"t\": null, \"o\": {\"k\": 7}}\n"
        );
    }

    #[test]
    fn columns_of_other_lengths_are_refused() {
        let object = vec![
            ("a".to_string(), JsonField::Int(vec![1, 2])),
            ("b".to_string(), JsonField::Object(vec![("c".into(), JsonField::Bool(vec![true]))])),
        ];
        let err = json_blocks(&object, "", "\n").unwrap_err().to_string();
        assert_eq!(err, r#"fields must be columns of one length, got 1 rows in fields["b"] against 2"#);
    }

    #[test]
    fn many_rows_keep_their_order() {
        let n = 3 * ROWS_PER_TASK + 5;
        let object = vec![("i".to_string(), JsonField::Int((0..n as i64).collect()))];
        let text = json_blocks(&object, "  ", ",\n").unwrap().concat();
        let want: String = (0..n).map(|i| format!("  {{\"i\": {i}}},\n")).collect();
        assert_eq!(text, want);
    }
}
