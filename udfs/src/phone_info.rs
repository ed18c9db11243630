//! `phone_info(raw, region)`: one parse of a phone number, every field of it.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, BooleanBuilder, StringBuilder, StructArray};
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions::core::getfield::GetFieldFunc;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use leadflow_phone::{PhoneInfo, PhoneParser};

use crate::strings::{Regions, coerce_text_args, phone_args};

/// `phone_info(raw, region) → struct{e164, valid, possible, country, type, national, error}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PhoneInfoUdf {
    signature: Signature,
    fields: Fields,
    /// Whether `national` is formatted; else it is NULL. Only a plan that
    /// never reads `national` gets the other (see [`NationalUnread`]).
    national: bool,
}

impl Default for PhoneInfoUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl PhoneInfoUdf {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            fields: leadflow_schemas::phone_info_fields(),
            national: true,
        }
    }

    /// Whether it formats `national` (else it leaves it NULL).
    pub fn formats_national(&self) -> bool {
        self.national
    }

    /// The function for plans that never read `national`, which it leaves NULL.
    fn without_national() -> Self {
        Self {
            national: false,
            ..Self::new()
        }
    }
}

pub(crate) static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        crate::DOC_SECTION,
        "Parses a phone number once and returns every fact about it: `e164` (E.164 form, \
         NULL when it does not parse), `valid`, `possible`, `country` (ISO alpha-2 of the \
         number), `type` (mobile, fixed_line, fixed_line_or_mobile, toll_free, voip, …), \
         `national` (national format) and `error` (NULL when valid; else missing, \
         not_a_number, invalid_country_code, too_short, too_long, too_short_after_idd or \
         invalid_number). Agrees with Google's libphonenumber.",
        "phone_info(raw, region)",
    )
    .with_sql_example(
        "```sql\n> select phone_info('(415) 555-0132', 'US')['e164'];\n+--------------+\n| +14155550132 |\n+--------------+\n```",
    )
    .with_argument("raw", "The phone number as written: any format, NULL allowed.")
    .with_argument(
        "region",
        "ISO 3166-1 alpha-2 region used for numbers written without a country code; optional.",
    )
    .with_related_udf("normalize_phone")
    .build()
});

impl ScalarUDFImpl for PhoneInfoUdf {
    fn name(&self) -> &str {
        "phone_info"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_text_args(self.name(), &["raw", "region"], 1, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(self.fields.clone()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (raw, region) = phone_args(self.name(), &arrays)?;

        let mut e164 = StringBuilder::with_capacity(n, n * 13);
        let mut valid = BooleanBuilder::with_capacity(n);
        let mut possible = BooleanBuilder::with_capacity(n);
        let mut country = StringBuilder::with_capacity(n, n * 2);
        let mut kind = StringBuilder::with_capacity(n, n * 10);
        let mut national = StringBuilder::with_capacity(n, n * 14);
        let mut error = StringBuilder::with_capacity(n, n * 4);

        let mut parser = if self.national {
            PhoneParser::default()
        } else {
            PhoneParser::without_national()
        };
        let mut info = PhoneInfo::default();
        let mut regions = Regions::default();
        for i in 0..n {
            let region = regions.get(region.as_ref().and_then(|r| r.get(i)));
            parser.parse_into(raw.get(i).unwrap_or(""), region, &mut info);
            let parsed = info.parsed;
            e164.append_option(parsed.then_some(info.e164.as_str()));
            valid.append_value(info.valid);
            possible.append_value(info.possible);
            country.append_option(info.country.map(|c| c.as_region_str()).as_deref());
            kind.append_option(info.phone_type.map(|t| t.as_str()));
            national.append_option((parsed && self.national).then_some(info.national.as_str()));
            error.append_option(info.error.map(|e| e.as_str()));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(e164.finish()),
            Arc::new(valid.finish()),
            Arc::new(possible.finish()),
            Arc::new(country.finish()),
            Arc::new(kind.finish()),
            Arc::new(national.finish()),
            Arc::new(error.finish()),
        ];
        let out = StructArray::try_new(self.fields.clone(), columns, None)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// An optimizer pass: when nothing in a plan can read `national` of a
/// `phone_info` call, the calls leave it NULL instead of formatting it
/// (about a fifth of a parse, which `enrich.sql` never reads).
///
/// `national` counts as unread when each use of a call, directly or
/// through the column a projection names it (`phone_info(…) AS p`), is
/// one of: another field of it (`p['e164']`), an argument of `find_phone`
/// (which reads only `valid`), or the column passed on unchanged by a
/// projection. Anything else (the struct in the output or a subquery's,
/// renamed, compared, grouped, given to another function) counts as a
/// read, and so does any plan with a node other than a query's plain
/// ones (a union, a write, `EXPLAIN ANALYZE`).
#[derive(Debug, Default)]
pub struct NationalUnread;

impl OptimizerRule for NationalUnread {
    fn name(&self) -> &str {
        "leadflow_national_unread"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if !calls_full_phone_info(&plan)? || national_may_be_read(&plan)? {
            return Ok(Transformed::no(plan));
        }
        let lean = Arc::new(ScalarUDF::from(PhoneInfoUdf::without_national()));
        plan.transform_down_with_subqueries(|node| {
            node.map_expressions(|expr| {
                expr.transform(|e| match e {
                    Expr::ScalarFunction(f) if is_full_phone_info(&f.func) => Ok(Transformed::yes(
                        Expr::ScalarFunction(ScalarFunction::new_udf(lean.clone(), f.args)),
                    )),
                    e => Ok(Transformed::no(e)),
                })
            })
        })
    }
}

fn is_full_phone_info(func: &ScalarUDF) -> bool {
    func.inner()
        .downcast_ref::<PhoneInfoUdf>()
        .is_some_and(|f| f.national)
}

fn calls_full_phone_info(plan: &LogicalPlan) -> Result<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                found |= matches!(e, Expr::ScalarFunction(f) if is_full_phone_info(&f.func));
                Ok(stop_once(found))
            })
        })
    })?;
    Ok(found)
}

/// Whether any node of `plan` (subqueries included) may read `national`
/// of a `phone_info` call, or the plan returns such a struct.
fn national_may_be_read(plan: &LogicalPlan) -> Result<bool> {
    // The columns projections name a call: `phone_info(…) AS p`.
    let mut names = HashSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Projection(p) = node {
            for expr in &p.expr {
                if let Expr::Alias(alias) = expr
                    && is_phone_info(&alias.expr)
                {
                    names.insert(alias.name.clone());
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let returns_struct = |plan: &LogicalPlan| {
        plan.schema()
            .fields()
            .iter()
            .any(|f| names.contains(f.name()))
    };
    if returns_struct(plan) {
        return Ok(true);
    }
    let uses = Uses { names: &names };
    let mut read = false;
    plan.apply_with_subqueries(|node| {
        // Only the nodes whose columns keep their names from input to
        // output, and whose every use of a column is an expression; a union
        // names its columns by position, a write (COPY, INSERT) or an
        // EXPLAIN ANALYZE returns a count, and a subquery's struct leaves
        // it as a value.
        read |= !matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::Unnest(_)
                | LogicalPlan::Repartition(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::Subquery(_)
        );
        if let LogicalPlan::Subquery(s) = node {
            read |= returns_struct(&s.subquery);
        }
        for expr in node.expressions() {
            let top = match (node, &expr) {
                // A projection may define a call's column or pass it on.
                (LogicalPlan::Projection(_), Expr::Alias(alias)) if is_phone_info(&alias.expr) => {
                    uses.may_read_below(&alias.expr)
                }
                (LogicalPlan::Projection(_), Expr::Column(c)) if names.contains(&c.name) => false,
                (LogicalPlan::Projection(_), Expr::Alias(alias))
                    if matches!(&*alias.expr, Expr::Column(c) if c.name == alias.name && names.contains(&c.name)) =>
                {
                    false
                }
                _ => uses.may_read(&expr),
            };
            read |= top;
        }
        Ok(stop_once(read))
    })?;
    Ok(read)
}

/// A walk's next step: stop once its answer is known.
fn stop_once(known: bool) -> TreeNodeRecursion {
    if known {
        TreeNodeRecursion::Stop
    } else {
        TreeNodeRecursion::Continue
    }
}

fn is_phone_info(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f) if f.func.inner().is::<PhoneInfoUdf>())
}

/// Where a `phone_info` struct is: a call, or a column named after one.
struct Uses<'a> {
    names: &'a HashSet<String>,
}

impl Uses<'_> {
    fn is_struct(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Column(c) | Expr::OuterReferenceColumn(_, c) => self.names.contains(&c.name),
            _ => is_phone_info(expr),
        }
    }

    /// Whether `expr` may read `national`, or use a struct whole.
    fn may_read(&self, expr: &Expr) -> bool {
        if self.is_struct(expr) {
            return true;
        }
        let Expr::ScalarFunction(f) = expr else {
            return self.children_may_read(expr);
        };
        if f.func.inner().is::<GetFieldFunc>()
            && let [base, Expr::Literal(ScalarValue::Utf8(Some(field)), _), ..] = f.args.as_slice()
            && self.is_struct(base)
        {
            return field == "national" || self.may_read_below(base);
        }
        if f.func.name() == "find_phone" && f.func.inner().is::<AsyncScalarUDF>() {
            // find_phone reads `valid` of the struct it is given.
            return f.args.iter().any(|arg| {
                if self.is_struct(arg) {
                    self.may_read_below(arg)
                } else {
                    self.may_read(arg)
                }
            });
        }
        self.children_may_read(expr)
    }

    /// Whether the arguments of a struct's call may (a column has none).
    fn may_read_below(&self, expr: &Expr) -> bool {
        match expr {
            Expr::ScalarFunction(f) => f.args.iter().any(|arg| self.may_read(arg)),
            _ => false,
        }
    }

    fn children_may_read(&self, expr: &Expr) -> bool {
        let mut read = false;
        let _ = expr.apply_children(|child| {
            read |= self.may_read(child);
            Ok(stop_once(read))
        });
        read
    }
}
