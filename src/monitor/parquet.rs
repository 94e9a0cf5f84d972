//! Parquet input (cargo feature `parquet`): a file is read row group by row
//! group, a batch of rows at a time (never the whole file), each value handed
//! to the same [`Sample`] accumulators as a CSV cell: numbers as their
//! shortest round-trip text, decimals scaled, booleans `true`/`false`, strings
//! (plain or dictionary-encoded) as they are, nulls and NaN as missing values.
//! Flat columns only: a repeated (list or map) column is left out. Codecs:
//! uncompressed, snappy, zstd, gzip, lz4 and lz4_raw; another (brotli, lzo) is
//! an error naming the file, the column and the codec. Built without the
//! feature, a `.parquet` input is an error saying so.

use std::path::Path;

use super::column::Sample;
use crate::error::UserError;

/// The codecs this build reads, as Parquet names them.
pub const CODECS: &str = "UNCOMPRESSED, SNAPPY, ZSTD, GZIP, LZ4, LZ4_RAW";

/// Reads the Parquet file at `path` (shown as `display`) into `sample`.
pub fn read_file(sample: &mut Sample, path: &Path, display: &str) -> Result<(), UserError> {
    imp::read_file(sample, path, display)
}

/// Reads a Parquet file held in memory (an S3 object) into `sample`.
pub fn read_bytes(sample: &mut Sample, body: Vec<u8>, display: &str) -> Result<(), UserError> {
    imp::read_bytes(sample, body, display)
}

#[cfg(not(feature = "parquet"))]
mod imp {
    use super::*;

    fn not_built(display: &str) -> UserError {
        UserError::invalid(format!(
            "`{display}` is a Parquet file, and this mlcd was built without Parquet support"
        ))
        .hint("use the released mlcd or the action image (Parquet is on there), build with `cargo build --features parquet`, or give the data as CSV or JSON lines")
    }

    pub fn read_file(_: &mut Sample, _: &Path, display: &str) -> Result<(), UserError> {
        Err(not_built(display))
    }

    pub fn read_bytes(_: &mut Sample, _: Vec<u8>, display: &str) -> Result<(), UserError> {
        Err(not_built(display))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn without_the_feature_a_parquet_file_is_an_error_saying_what_to_do() {
            let mut s = Sample::default();
            let e = read_file(&mut s, Path::new("data/x.parquet"), "data/x.parquet").unwrap_err();
            assert!(
                e.message
                    .contains("`data/x.parquet` is a Parquet file, and this mlcd was built without Parquet support"),
                "{}",
                e.message
            );
            assert!(
                e.hint
                    .as_deref()
                    .unwrap_or("")
                    .contains("--features parquet"),
                "{:?}",
                e.hint
            );
        }
    }
}

#[cfg(feature = "parquet")]
mod imp {
    use std::fmt::Write as _;

    use parquet::basic::{Compression, ConvertedType, LogicalType, Type as Physical};
    use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
    use parquet::data_type::{ByteArray, DataType, FixedLenByteArray, Int96};
    use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
    use parquet::schema::types::ColumnDescPtr;

    use super::*;
    use crate::monitor::column::Origin;

    /// Rows decoded per column before they are handed over row by row.
    const BATCH: usize = 8192;

    pub fn read_file(sample: &mut Sample, path: &Path, display: &str) -> Result<(), UserError> {
        let f = std::fs::File::open(path)
            .map_err(|e| UserError::invalid(format!("cannot open `{display}`: {e}")))?;
        read(sample, f, display)
    }

    pub fn read_bytes(sample: &mut Sample, body: Vec<u8>, display: &str) -> Result<(), UserError> {
        read(sample, bytes::Bytes::from(body), display)
    }

    fn unreadable(display: &str, e: impl std::fmt::Display) -> UserError {
        UserError::invalid(format!("`{display}` is not a readable Parquet file: {e}")).hint(
            "check that the file was written completely (a Parquet file ends with its footer); rewrite it, or give the data as CSV",
        )
    }

    /// How a column's values become text.
    #[derive(Clone, Copy)]
    enum Render {
        Plain,
        Unsigned,
        Decimal(u32),
        Text,
        Float16,
        Hex,
    }

    fn render_of(d: &ColumnDescPtr) -> Render {
        let scale = u32::try_from(d.type_scale()).unwrap_or(0);
        match (d.logical_type_ref(), d.converted_type()) {
            (Some(LogicalType::Decimal { .. }), _) | (None, ConvertedType::DECIMAL) => {
                Render::Decimal(scale)
            }
            (
                Some(LogicalType::Integer(parquet::basic::IntType {
                    is_signed: false, ..
                })),
                _,
            )
            | (None, ConvertedType::UINT_32 | ConvertedType::UINT_64) => Render::Unsigned,
            (Some(LogicalType::Float16), _) => Render::Float16,
            _ => match d.physical_type() {
                Physical::BYTE_ARRAY => Render::Text,
                Physical::FIXED_LEN_BYTE_ARRAY => Render::Hex,
                _ => Render::Plain,
            },
        }
    }

    /// One column's reader and the values of the batch being handed over.
    struct Leaf {
        sample_index: usize,
        max_def: i16,
        render: Render,
        reader: Values,
        defs: Vec<i16>,
        next: usize,
    }

    enum Values {
        Bool(ColumnReaderImpl<parquet::data_type::BoolType>, Vec<bool>),
        I32(ColumnReaderImpl<parquet::data_type::Int32Type>, Vec<i32>),
        I64(ColumnReaderImpl<parquet::data_type::Int64Type>, Vec<i64>),
        I96(ColumnReaderImpl<parquet::data_type::Int96Type>, Vec<Int96>),
        F32(ColumnReaderImpl<parquet::data_type::FloatType>, Vec<f32>),
        F64(ColumnReaderImpl<parquet::data_type::DoubleType>, Vec<f64>),
        Bytes(
            ColumnReaderImpl<parquet::data_type::ByteArrayType>,
            Vec<ByteArray>,
        ),
        Fixed(
            ColumnReaderImpl<parquet::data_type::FixedLenByteArrayType>,
            Vec<FixedLenByteArray>,
        ),
    }

    fn batch<T: DataType>(
        r: &mut ColumnReaderImpl<T>,
        defs: &mut Vec<i16>,
        vals: &mut Vec<T::T>,
    ) -> parquet::errors::Result<usize> {
        defs.clear();
        vals.clear();
        r.read_records(BATCH, Some(defs), None, vals)
            .map(|(rows, _, _)| rows)
    }

    impl Leaf {
        /// Decodes the next batch; the number of rows in it.
        fn fill(&mut self) -> parquet::errors::Result<usize> {
            self.next = 0;
            let d = &mut self.defs;
            match &mut self.reader {
                Values::Bool(r, v) => batch(r, d, v),
                Values::I32(r, v) => batch(r, d, v),
                Values::I64(r, v) => batch(r, d, v),
                Values::I96(r, v) => batch(r, d, v),
                Values::F32(r, v) => batch(r, d, v),
                Values::F64(r, v) => batch(r, d, v),
                Values::Bytes(r, v) => batch(r, d, v),
                Values::Fixed(r, v) => batch(r, d, v),
            }
        }

        /// Hands row `row`'s value to `sample`: plain numbers as numbers,
        /// everything else (and nulls, as "") as text.
        fn push(&mut self, row: usize, sample: &mut Sample, origin: Origin, out: &mut String) {
            let null = self.max_def > 0 && self.defs.get(row).is_some_and(|&d| d < self.max_def);
            let number = match (&self.reader, self.render) {
                _ if null => None,
                (Values::I32(_, v), Render::Plain) => Some(f64::from(v[self.next])),
                (Values::I32(_, v), Render::Unsigned) => Some(f64::from(v[self.next] as u32)),
                (Values::I64(_, v), Render::Plain) => Some(v[self.next] as f64),
                (Values::I64(_, v), Render::Unsigned) => Some(v[self.next] as u64 as f64),
                (Values::F32(_, v), _) => Some(f64::from(v[self.next])),
                (Values::F64(_, v), _) => Some(v[self.next]),
                _ => None,
            };
            match number {
                Some(x) => {
                    let i = self.next;
                    let reader = &self.reader;
                    let render = self.render;
                    self.next += 1;
                    sample.push_f64(self.sample_index, x, origin, out, |buf| {
                        write_number(reader, render, i, buf)
                    });
                }
                None => {
                    self.text(row, out);
                    sample.push(self.sample_index, out, origin);
                }
            }
        }

        /// Writes row `row`'s value as text into `out` ("" when null).
        fn text(&mut self, row: usize, out: &mut String) {
            out.clear();
            if self.max_def > 0 && self.defs.get(row).is_some_and(|&d| d < self.max_def) {
                return;
            }
            let i = self.next;
            self.next += 1;
            let render = self.render;
            match &self.reader {
                Values::Bool(_, v) => out.push_str(if v[i] { "true" } else { "false" }),
                Values::I32(_, v) => match render {
                    Render::Decimal(s) => decimal(i128::from(v[i]), s, out),
                    Render::Unsigned => _ = write!(out, "{}", v[i] as u32),
                    _ => _ = write!(out, "{}", v[i]),
                },
                Values::I64(_, v) => match render {
                    Render::Decimal(s) => decimal(i128::from(v[i]), s, out),
                    Render::Unsigned => _ = write!(out, "{}", v[i] as u64),
                    _ => _ = write!(out, "{}", v[i]),
                },
                Values::I96(_, v) => _ = write!(out, "{}", v[i].to_nanos()),
                Values::F32(_, v) => float(f64::from(v[i]), out),
                Values::F64(_, v) => float(v[i], out),
                Values::Bytes(_, v) => bytes_text(v[i].data(), render, out),
                Values::Fixed(_, v) => bytes_text(v[i].data(), render, out),
            }
        }
    }

    /// The text of value `i` of a plain number column (what `Leaf::text` writes).
    fn write_number(reader: &Values, render: Render, i: usize, out: &mut String) {
        match reader {
            Values::I32(_, v) if matches!(render, Render::Unsigned) => {
                _ = write!(out, "{}", v[i] as u32)
            }
            Values::I32(_, v) => _ = write!(out, "{}", v[i]),
            Values::I64(_, v) if matches!(render, Render::Unsigned) => {
                _ = write!(out, "{}", v[i] as u64)
            }
            Values::I64(_, v) => _ = write!(out, "{}", v[i]),
            Values::F32(_, v) => float(f64::from(v[i]), out),
            Values::F64(_, v) => float(v[i], out),
            _ => {}
        }
    }

    /// Floats as their shortest round-trip text; NaN and infinities as missing.
    fn float(x: f64, out: &mut String) {
        if x.is_finite() {
            _ = write!(out, "{x}");
        }
    }

    /// An unscaled integer and a scale as decimal text (12345, 2 → 123.45).
    fn decimal(v: i128, scale: u32, out: &mut String) {
        if scale == 0 {
            _ = write!(out, "{v}");
            return;
        }
        let digits = v.unsigned_abs().to_string();
        let scale = scale as usize;
        if v < 0 {
            out.push('-');
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            _ = write!(out, "{int}.{frac}");
        } else {
            _ = write!(out, "0.{}{digits}", "0".repeat(scale - digits.len()));
        }
    }

    fn bytes_text(b: &[u8], render: Render, out: &mut String) {
        match render {
            Render::Decimal(s) if b.len() <= 16 && !b.is_empty() => {
                // Big-endian two's complement, sign-extended to 128 bits.
                let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
                let mut buf = [fill; 16];
                buf[16 - b.len()..].copy_from_slice(b);
                decimal(i128::from_be_bytes(buf), s, out);
            }
            Render::Float16 if b.len() == 2 => {
                float(f16_to_f64(u16::from_le_bytes([b[0], b[1]])), out)
            }
            Render::Text => match std::str::from_utf8(b) {
                Ok(s) => out.push_str(s),
                Err(_) => hex(b, out),
            },
            _ => hex(b, out),
        }
    }

    fn hex(b: &[u8], out: &mut String) {
        for x in b {
            _ = write!(out, "{x:02x}");
        }
    }

    /// IEEE 754 half precision to f64.
    fn f16_to_f64(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let frac = f64::from(h & 0x3ff);
        match exp {
            0 => sign * frac * 2f64.powi(-24),
            31 => f64::NAN,
            _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    fn read<R: ChunkReader + 'static>(
        sample: &mut Sample,
        reader: R,
        display: &str,
    ) -> Result<(), UserError> {
        let file = SerializedFileReader::new(reader).map_err(|e| unreadable(display, e))?;
        let meta = file.metadata();
        let schema = meta.file_metadata().schema_descr();
        // Flat columns, named by their dotted path; repeated ones are left out.
        let leaves: Vec<(usize, String)> = (0..schema.num_columns())
            .filter(|&j| schema.column(j).max_rep_level() == 0)
            .map(|j| (j, schema.column(j).path().string()))
            .collect();
        let file_index = sample.files.len();
        sample.files.push(display.to_string());
        let indices: Vec<usize> = leaves
            .iter()
            .map(|(_, name)| sample.column_index(name))
            .collect();
        let mut row_number: u64 = 0;
        let mut text = String::new();
        for g in 0..meta.num_row_groups() {
            let rg_meta = meta.row_group(g);
            for (j, name) in &leaves {
                let codec = rg_meta.column(*j).compression();
                if !supported(codec) {
                    return Err(UserError::invalid(format!(
                        "`{display}`: column `{name}` (row group {g}) is compressed with {}, which mlcd does not read (it reads {CODECS})",
                        codec_name(codec)
                    ))
                    .hint("rewrite the file with snappy or zstd, e.g. pyarrow.parquet.write_table(table, path, compression=\"zstd\")"));
                }
            }
            let rg = file.get_row_group(g).map_err(|e| unreadable(display, e))?;
            let mut cols = Vec::with_capacity(leaves.len());
            for ((j, _), &sample_index) in leaves.iter().zip(&indices) {
                let d = schema.column(*j);
                let reader = match rg
                    .get_column_reader(*j)
                    .map_err(|e| unreadable(display, e))?
                {
                    ColumnReader::BoolColumnReader(r) => Values::Bool(r, Vec::new()),
                    ColumnReader::Int32ColumnReader(r) => Values::I32(r, Vec::new()),
                    ColumnReader::Int64ColumnReader(r) => Values::I64(r, Vec::new()),
                    ColumnReader::Int96ColumnReader(r) => Values::I96(r, Vec::new()),
                    ColumnReader::FloatColumnReader(r) => Values::F32(r, Vec::new()),
                    ColumnReader::DoubleColumnReader(r) => Values::F64(r, Vec::new()),
                    ColumnReader::ByteArrayColumnReader(r) => Values::Bytes(r, Vec::new()),
                    ColumnReader::FixedLenByteArrayColumnReader(r) => Values::Fixed(r, Vec::new()),
                };
                cols.push(Leaf {
                    sample_index,
                    max_def: d.max_def_level(),
                    render: render_of(&d),
                    reader,
                    defs: Vec::new(),
                    next: 0,
                });
            }
            let mut left = usize::try_from(rg_meta.num_rows()).unwrap_or(0);
            while left > 0 {
                let mut n = None;
                for (c, (_, name)) in cols.iter_mut().zip(&leaves) {
                    let got = c.fill().map_err(|e| {
                        unreadable(display, format!("column `{name}`, row group {g}: {e}"))
                    })?;
                    if *n.get_or_insert(got) != got || got == 0 {
                        return Err(unreadable(
                            display,
                            format!(
                                "column `{name}` ends early in row group {g} (the footer promises {} more rows)",
                                left
                            ),
                        ));
                    }
                }
                let n = n.unwrap_or(0).min(left);
                for row in 0..n {
                    row_number += 1;
                    let origin = Origin {
                        file: file_index,
                        line: row_number,
                    };
                    for c in cols.iter_mut() {
                        c.push(row, sample, origin, &mut text);
                    }
                    sample.end_row(origin);
                }
                left -= n;
            }
        }
        Ok(())
    }

    fn supported(c: Compression) -> bool {
        matches!(
            c,
            Compression::UNCOMPRESSED
                | Compression::SNAPPY
                | Compression::ZSTD(_)
                | Compression::GZIP(_)
                | Compression::LZ4
                | Compression::LZ4_RAW
        )
    }

    fn codec_name(c: Compression) -> &'static str {
        match c {
            Compression::UNCOMPRESSED => "UNCOMPRESSED",
            Compression::SNAPPY => "SNAPPY",
            Compression::GZIP(_) => "GZIP",
            Compression::LZO => "LZO",
            Compression::BROTLI(_) => "BROTLI",
            Compression::LZ4 => "LZ4",
            Compression::ZSTD(_) => "ZSTD",
            Compression::LZ4_RAW => "LZ4_RAW",
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn decimals_keep_their_scale_and_sign() {
            let mut s = String::new();
            for (v, scale, want) in [
                (12345, 2, "123.45"),
                (-5, 3, "-0.005"),
                (7, 0, "7"),
                (-12345, 2, "-123.45"),
            ] {
                s.clear();
                decimal(v, scale, &mut s);
                assert_eq!(s, want);
            }
            s.clear();
            bytes_text(&[0xff, 0x85], Render::Decimal(1), &mut s); // -123
            assert_eq!(s, "-12.3");
        }

        #[test]
        fn half_floats_decode() {
            assert_eq!(f16_to_f64(0x3c00), 1.0);
            assert_eq!(f16_to_f64(0xc000), -2.0);
            assert_eq!(f16_to_f64(0x3555), 0.333_251_953_125);
        }
    }
}
