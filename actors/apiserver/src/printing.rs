//! Server-side printing: `Table` responses for `kubectl get`, from the protocols printers
//! (built-in kinds) or a CRD's additionalPrinterColumns.

use crate::handlers::Ctx;
use crate::request::Query;
use protocols::table::{self, IncludeObject};
use serde_json::Value;

/// Everything needed to print rows of one resource, detached from the request.
#[derive(Debug, Clone)]
pub struct Printer {
    resource: String,
    columns: Option<Vec<Value>>,
    include: IncludeObject,
}

impl Printer {
    /// The printer for the resource of `ctx`.
    pub fn new(ctx: &Ctx<'_>) -> Self {
        let columns = ctx.r.custom.as_ref().map(|v| {
            let mut cols = v.get("additionalPrinterColumns").and_then(Value::as_array).cloned().unwrap_or_default();
            // As upstream: an Age column closes the table unless the CRD prints creation time itself.
            let has_age = cols.iter().any(|c| c.get("jsonPath").and_then(Value::as_str) == Some(".metadata.creationTimestamp"));
            if !cols.is_empty() && !has_age {
                cols.push(serde_json::json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}));
            }
            cols
        });
        Printer {
            resource: ctx.r.plural.clone(),
            columns,
            include: include_object(&ctx.q),
        }
    }

    /// A Table of `items`.
    pub fn table(&self, items: &[Value], with_headers: bool) -> Value {
        let now = jiff::Timestamp::now();
        match &self.columns {
            Some(cols) => table::custom_table(cols, items, self.include, with_headers, now),
            None => table::table(&self.resource, items, self.include, with_headers, now),
        }
    }
}

fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// A Table for a response.
pub fn table(ctx: &Ctx<'_>, items: &[Value], with_headers: bool, _q: &Query) -> Value {
    Printer::new(ctx).table(items, with_headers)
}
