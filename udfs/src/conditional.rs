//! Refusing paid calls under a condition. DataFusion evaluates an async UDF
//! for every row of a batch before the expression around it, so
//! `CASE WHEN … THEN find_phone(…) END`, `coalesce(x, find_phone(…))` or
//! `x AND find_phone(…)['status'] = …` would still call, and pay, for every
//! row. [`RefuseConditionalAsync`] finds an async UDF in a position that
//! reads as conditional and refuses the query, saying what to write instead.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// An analyzer rule: a plan with an async UDF under `CASE`, `coalesce`,
/// `nvl`, `nvl2`, `AND` or `OR` (past their first operand) is an error.
#[derive(Debug, Default)]
pub struct RefuseConditionalAsync;

impl AnalyzerRule for RefuseConditionalAsync {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.apply_with_subqueries(|node| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    for (construct, branch) in conditional_branches(e) {
                        if let Some(udf) = async_udf_in(branch) {
                            return plan_err!(
                                "{udf} is called under {construct}, but DataFusion evaluates it for \
                                 every row before {construct} decides, so every row would be looked \
                                 up and paid for. Call {udf} without a condition: find_phone itself \
                                 skips leads whose own phone is valid (skipped_has_phone) and leads \
                                 below a provider's min_user_tier; to look up only some rows, select \
                                 them with WHERE in a subquery and call {udf} over that."
                            );
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "refuse_conditional_async_udf"
    }
}

/// The operands of `e` that are evaluated only for some rows, with the
/// construct's name.
fn conditional_branches(e: &Expr) -> Vec<(&'static str, &Expr)> {
    match e {
        Expr::Case(case) => {
            let mut out = Vec::new();
            for (i, (when, then)) in case.when_then_expr.iter().enumerate() {
                // The first WHEN is evaluated for every row anyway.
                if i > 0 {
                    out.push(("CASE", when.as_ref()));
                }
                out.push(("CASE", then.as_ref()));
            }
            out.extend(case.else_expr.iter().map(|e| ("CASE", e.as_ref())));
            out
        }
        Expr::BinaryExpr(BinaryExpr { op, right, .. }) => match op {
            Operator::And => vec![("AND", right.as_ref())],
            Operator::Or => vec![("OR", right.as_ref())],
            _ => Vec::new(),
        },
        Expr::ScalarFunction(f) => match f.name() {
            name @ ("coalesce" | "nvl" | "nvl2") => f
                .args
                .iter()
                .skip(1)
                .map(|a| {
                    (
                        if name == "coalesce" {
                            "COALESCE"
                        } else {
                            "NVL"
                        },
                        a,
                    )
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The name of an async UDF called anywhere in `e`.
fn async_udf_in(e: &Expr) -> Option<String> {
    let mut found = None;
    e.apply(|e| {
        if let Expr::ScalarFunction(f) = e
            && f.func.as_async().is_some()
        {
            found = Some(f.name().to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the visitor never fails");
    found
}
