//! Facts shared by the template drift test and the store operation test.

/// IAM actions (and the resource they act on) each `DynamoStore` method issues. `table` is the
/// table ARN, `index/<name>` a GSI. TransactWriteItems is authorized per item action (PutItem for
/// its puts, ConditionCheckItem for its condition checks); there is no IAM action of its own.
/// `tests/iam_store_ops.rs` runs every method on moto_server and compares the operations it sees.
#[rustfmt::skip]
pub const STORE_METHOD_ACTIONS: &[(&str, &[(&str, &str)])] = &[
    // TransactWriteItems of two conditional Puts (task + idempotency key); on a taken key it reads
    // the key and the first task.
    ("create_task", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("get_task", &[("dynamodb:GetItem", "table")]),
    // Conditional PutItem on the version; on a failed condition it reads the task to tell
    // Conflict from NotFound.
    ("update_task", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("due_for_creation", &[("dynamodb:Query", "index/due")]),
    ("due_for_polling", &[("dynamodb:Query", "index/due")]),
    ("list_tasks", &[("dynamodb:Query", "index/by_state")]),
    ("get_group", &[("dynamodb:GetItem", "table")]),
    // Conditional PutItem; when another task won, reads the winner.
    ("create_group", &[("dynamodb:PutItem", "table"), ("dynamodb:GetItem", "table")]),
    ("release_group", &[("dynamodb:DeleteItem", "table")]),
    ("acquire_lease", &[("dynamodb:PutItem", "table")]),
    ("renew_lease", &[("dynamodb:UpdateItem", "table")]),
    ("release_lease", &[("dynamodb:DeleteItem", "table")]),
    ("put_mapping", &[("dynamodb:PutItem", "table")]),
    ("get_mapping", &[("dynamodb:GetItem", "table")]),
    ("list_mappings", &[("dynamodb:Query", "table")]),
    ("delete_mapping", &[("dynamodb:DeleteItem", "table")]),
    ("put_contact", &[("dynamodb:PutItem", "table")]),
    ("get_contact", &[("dynamodb:GetItem", "table")]),
];
