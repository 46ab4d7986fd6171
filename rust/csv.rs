//! CSV rows at the speed of the analysis: a million report rows take seconds through Python's
//! `repr` and `csv` module, and a fraction of a second here. The text is exactly what Python
//! writes: floats as `repr(x)`, text quoted as `csv.writer` (`QUOTE_MINIMAL`) quotes it.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// One column of a CSV block.
#[derive(Debug, Clone, Copy)]
pub enum CsvColumn<'a> {
    /// Text, quoted where it holds a comma, a quote or a line break.
    Text(&'a [String]),
    /// Numbers as Python's `repr`; NaN and infinities (lrfind's "none") are written empty.
    Float(&'a [f64]),
    /// Whole numbers; negative values (lrfind's "no index") are written empty.
    Int(&'a [i64]),
}

impl CsvColumn<'_> {
    fn len(&self) -> usize {
        match self {
            CsvColumn::Text(v) => v.len(),
            CsvColumn::Float(v) => v.len(),
            CsvColumn::Int(v) => v.len(),
        }
    }
}

/// Rows per parallel task: large enough to amortise the scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 4096;

/// The rows of `columns` (all of the same length) as CSV text: fields joined by `,`, each row
/// ended by `\n`. Rows are formatted in parallel.
pub fn csv_rows(columns: &[CsvColumn<'_>]) -> Result<String> {
    Ok(csv_blocks(columns)?.concat())
}

/// [`csv_rows`] in consecutive blocks of rows, one per parallel task, so that a caller can copy
/// them straight into its own buffer.
pub fn csv_blocks(columns: &[CsvColumn<'_>]) -> Result<Vec<String>> {
    let rows = columns.first().map_or(0, CsvColumn::len);
    if let Some((i, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != rows) {
        return Err(Error::Element {
            name: "columns",
            index: i,
            expected: "as long as column 0",
            value: format!("{} rows against {rows}", c.len()),
        });
    }
    let starts: Vec<usize> = (0..rows).step_by(ROWS_PER_TASK).collect();
    Ok(starts
        .into_par_iter()
        .map(|first| {
            let last = (first + ROWS_PER_TASK).min(rows);
            // About 24 bytes a field: one allocation for most blocks.
            let mut out = String::with_capacity((last - first) * (24 * columns.len() + 1));
            let mut floats = ryu::Buffer::new();
            let mut ints = itoa::Buffer::new();
            for row in first..last {
                let start = out.len();
                for (j, column) in columns.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    match column {
                        CsvColumn::Text(v) => push_quoted(&mut out, &v[row]),
                        CsvColumn::Float(v) if v[row].is_finite() => push_repr(&mut out, v[row], &mut floats),
                        CsvColumn::Int(v) if v[row] >= 0 => out.push_str(ints.format(v[row])),
                        CsvColumn::Float(_) | CsvColumn::Int(_) => {}
                    }
                }
                if out.len() == start {
                    // As `csv.writer`: a row of one empty field is `""`, or it would read as no field.
                    out.push_str("\"\"");
                }
                out.push('\n');
            }
            out
        })
        .collect())
}

/// `text` as Python's `csv.writer` writes a field: in quotes, with quotes doubled, when it holds
/// the delimiter, a quote or a line break.
fn push_quoted(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// A finite `x` as Python's `repr(x)`. ryu writes the same shortest digits, in the same layout
/// for decimal exponents in (-4, 16]; Python writes the rest in scientific notation, with a
/// signed exponent of at least two digits (`1e-05`, `1e+16`), where ryu writes `1e-5`, `1e16`
/// and positional `0.0000dd` for an exponent of -4.
pub(crate) fn push_repr(out: &mut String, x: f64, buf: &mut ryu::Buffer) {
    let text = buf.format_finite(x);
    if let Some(e) = text.find('e') {
        out.push_str(&text[..e]);
        let exponent = &text[e + 1..];
        let (sign, digits) = exponent.strip_prefix('-').map_or(("e+", exponent), |d| ("e-", d));
        out.push_str(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let (minus, body) = text.strip_prefix('-').map_or(("", text), |b| ("-", b));
    match body.strip_prefix("0.0000") {
        Some(digits) => {
            // d.ddd x 10^-5: ryu's digits, without its leading zeros.
            out.push_str(minus);
            out.push_str(&digits[..1]);
            if digits.len() > 1 {
                out.push('.');
                out.push_str(&digits[1..]);
            }
            out.push_str("e-05");
        }
        None => out.push_str(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut out = String::new();
        push_repr(&mut out, x, &mut ryu::Buffer::new());
        out
    }

    #[test]
    fn floats_read_as_python_writes_them() {
        // Python 3's repr of each value, typed in from the interpreter.
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.0, "123456.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234567e16, "1.2345678901234568e+16"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (-2.5e-4, "-0.00025"),
            (5e-5, "5e-05"),
            (-1.2345e-5, "-1.2345e-05"),
            (1.2345e-4, "0.00012345"),
            (1.5e300, "1.5e+300"),
            (-1e-100, "-1e-100"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn rows_and_fields() {
        let names = ["plain".to_string(), "a,b \"c\"".to_string()];
        let text = csv_rows(&[
            CsvColumn::Text(&names),
            CsvColumn::Float(&[0.001, f64::NAN]),
            CsvColumn::Int(&[-1, 42]),
            CsvColumn::Float(&[f64::INFINITY, 2.0]),
        ])
        .unwrap();
        assert_eq!(text, "plain,0.001,,\n\"a,b \"\"c\"\"\",,42,2.0\n");
        assert_eq!(csv_rows(&[]).unwrap(), "");
        assert_eq!(csv_rows(&[CsvColumn::Float(&[f64::NAN, 1.0])]).unwrap(), "\"\"\n1.0\n");
        let err = csv_rows(&[CsvColumn::Int(&[1]), CsvColumn::Int(&[])]).unwrap_err();
        assert_eq!(err.to_string(), "columns[1] must be as long as column 0, got 0 rows against 1");
    }

    #[test]
    fn many_rows_keep_their_order() {
        let values: Vec<i64> = (0..10_000).collect();
        let text = csv_rows(&[CsvColumn::Int(&values)]).unwrap();
        let back: Vec<i64> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(back, values);
    }
}
