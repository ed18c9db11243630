//! `array_length`, DataFusion's own, with its one-argument form over a
//! list column read from the list's offsets.
//!
//! DataFusion 55 computes every row's length by slicing the row's value out
//! of the list (for a list of structs, a slice of every child column) and
//! dropping it again: `array_length(f['attempts'])` in `enrich.sql` was a
//! fifth of a run's CPU. A row's length is the difference of two offsets;
//! every other form (a dimension, a fixed-size list, a scalar) is
//! DataFusion's own code.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, OffsetSizeTrait, UInt64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// `array_length(array[, dimension])`, answered from the offsets when it is
/// `array_length(list_column)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayLength {
    inner: Arc<ScalarUDF>,
}

impl Default for ArrayLength {
    fn default() -> Self {
        Self::new()
    }
}

impl ArrayLength {
    pub fn new() -> Self {
        Self {
            inner: datafusion::functions_nested::length::array_length_udf(),
        }
    }
}

impl ScalarUDFImpl for ArrayLength {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [ColumnarValue::Array(array)] = args.args.as_slice() {
            match array.data_type() {
                DataType::List(_) => return Ok(lengths(array.as_list::<i32>())),
                DataType::LargeList(_) => return Ok(lengths(array.as_list::<i64>())),
                _ => {}
            }
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// Each row's element count, NULL where the list is.
fn lengths<O: OffsetSizeTrait>(
    list: &datafusion::arrow::array::GenericListArray<O>,
) -> ColumnarValue {
    let values = list
        .offsets()
        .lengths()
        .map(|n| n as u64)
        .collect::<Vec<u64>>();
    ColumnarValue::Array(Arc::new(UInt64Array::new(
        values.into(),
        list.nulls().cloned(),
    )))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, Int32Array, ListArray};
    use datafusion::arrow::datatypes::{Field, Int32Type};
    use datafusion::config::ConfigOptions;

    use super::*;

    fn call(udf: &dyn ScalarUDFImpl, array: ArrayRef) -> ArrayRef {
        let field = Arc::new(Field::new("a", array.data_type().clone(), true));
        let args = ScalarFunctionArgs {
            number_rows: array.len(),
            arg_fields: vec![field],
            return_field: Arc::new(Field::new("len", DataType::UInt64, true)),
            config_options: Arc::new(ConfigOptions::default()),
            args: vec![ColumnarValue::Array(array)],
        };
        match udf.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(s) => s.to_array().unwrap(),
        }
    }

    #[test]
    fn agrees_with_datafusion_on_nulls_empties_and_slices() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2), None]),
            None,
            Some(vec![]),
            Some(vec![Some(4)]),
            None,
            Some(vec![Some(5), Some(6)]),
        ]);
        let fast = ArrayLength::new();
        let datafusion = array_length_udf_impl();
        for (offset, len) in [(0, 6), (1, 4), (3, 3), (2, 0)] {
            let sliced: ArrayRef = Arc::new(list.slice(offset, len));
            let ours = call(&fast, sliced.clone());
            let theirs = call(datafusion.as_ref(), sliced);
            assert_eq!(ours.as_ref(), theirs.as_ref(), "slice {offset}+{len}");
        }
        let whole = call(&fast, Arc::new(list));
        let expect: ArrayRef = Arc::new(UInt64Array::from(vec![
            Some(3),
            None,
            Some(0),
            Some(1),
            None,
            Some(2),
        ]));
        assert_eq!(whole.as_ref(), expect.as_ref());
    }

    #[test]
    fn other_forms_are_datafusions() {
        // Not a list: DataFusion's own error.
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let field = Arc::new(Field::new("a", DataType::Int32, true));
        let err = ArrayLength::new()
            .invoke_with_args(ScalarFunctionArgs {
                number_rows: 2,
                arg_fields: vec![field],
                return_field: Arc::new(Field::new("len", DataType::UInt64, true)),
                config_options: Arc::new(ConfigOptions::default()),
                args: vec![ColumnarValue::Array(ints)],
            })
            .unwrap_err();
        assert!(err.to_string().contains("array_length"), "{err}");
    }

    fn array_length_udf_impl() -> Arc<dyn ScalarUDFImpl> {
        datafusion::functions_nested::length::array_length_udf()
            .inner()
            .clone()
    }
}
