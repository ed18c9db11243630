//! Reading the arguments of the phone UDFs: strings of any Arrow encoding
//! (Utf8, LargeUtf8, Utf8View) and region codes.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::utils::take_function_args;
use datafusion::common::{Result, exec_err, plan_err};
use leadflow_phone::{Region, parse_region};

/// A borrowed view of a string array of any encoding.
pub(crate) enum Strings<'a> {
    Utf8(&'a datafusion::arrow::array::StringArray),
    LargeUtf8(&'a datafusion::arrow::array::LargeStringArray),
    View(&'a datafusion::arrow::array::StringViewArray),
    /// An all-NULL argument (a bare `NULL` literal).
    Null,
}

impl<'a> Strings<'a> {
    pub(crate) fn new(fn_name: &str, array: &'a ArrayRef) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => Strings::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Strings::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Strings::View(array.as_string_view()),
            DataType::Null => Strings::Null,
            other => return exec_err!("{fn_name} expects text arguments, got {other}"),
        })
    }

    /// The value at row `i`, `None` when NULL.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Strings::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::View(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::Null => None,
        }
    }
}

/// The `(raw[, region])` arguments of a phone UDF.
pub(crate) fn phone_args<'a>(
    fn_name: &str,
    arrays: &'a [ArrayRef],
) -> Result<(Strings<'a>, Option<Strings<'a>>)> {
    let (raw, region) = match arrays {
        [raw] => (raw, None),
        _ => {
            let [raw, region] = take_function_args(fn_name, arrays)?;
            (raw, Some(region))
        }
    };
    Ok((
        Strings::new(fn_name, raw)?,
        region.map(|r| Strings::new(fn_name, r)).transpose()?,
    ))
}

/// Region codes repeat row after row; remembers the last one parsed.
#[derive(Default)]
pub(crate) struct Regions {
    last: Option<(String, Option<Region>)>,
}

impl Regions {
    #[inline]
    pub(crate) fn get(&mut self, code: Option<&str>) -> Option<Region> {
        let code = code?;
        if let Some((last, region)) = &self.last
            && last == code
        {
            return *region;
        }
        let region = parse_region(code);
        match &mut self.last {
            Some((last, r)) => {
                last.clear();
                last.push_str(code);
                *r = region;
            }
            None => self.last = Some((code.to_string(), region)),
        }
        region
    }
}

/// Whether a UDF argument of this type can be read as [`Strings`].
/// The types a function of text arguments named `names` (the first `min`
/// required) takes its arguments as, or an error that names the argument
/// and says what to write: text of any encoding passes, a dictionary of text
/// is decoded, anything else is refused at planning.
pub(crate) fn coerce_text_args(
    fn_name: &str,
    names: &[&str],
    min: usize,
    arg_types: &[DataType],
) -> Result<Vec<DataType>> {
    if !(min..=names.len()).contains(&arg_types.len()) {
        return plan_err!(
            "{fn_name}({}) takes {}{} arguments, got {}",
            names.join(", "),
            if min < names.len() {
                format!("{min} to ")
            } else {
                String::new()
            },
            names.len(),
            arg_types.len()
        );
    }
    arg_types
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (t, name))| match t {
            t if is_text(t) => Ok(t.clone()),
            DataType::Dictionary(_, v) if is_text(v) => Ok(DataType::Utf8),
            other => plan_err!(
                "{fn_name}: argument {} ({name}) must be text, got {other}; cast it, e.g. CAST({name} AS VARCHAR)",
                i + 1
            ),
        })
        .collect()
}

pub(crate) fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// An integer argument of any integer type, read as `i32`.
pub(crate) struct Ints(Int32Array);

impl Ints {
    pub(crate) fn new(fn_name: &str, array: &ArrayRef) -> Result<Self> {
        if !(array.data_type().is_integer() || array.data_type() == &DataType::Null) {
            return exec_err!("{fn_name} expects an integer, got {}", array.data_type());
        }
        Ok(Ints(cast(array, &DataType::Int32)?.as_primitive().clone()))
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<i32> {
        self.0.is_valid(i).then(|| self.0.value(i))
    }
}
