//! A [`Progress`] carried by the running task, so a caller of the admin API (the console's
//! background apply) sees an apply's progress without the API's request shape changing.

use std::future::Future;
use std::sync::Arc;

use super::Progress;

tokio::task_local! {
    static CURRENT: Arc<dyn Progress>;
}

/// Runs `f` with `progress` receiving the progress of mapping runs started inside it.
pub async fn with_progress<F: Future>(progress: Arc<dyn Progress>, f: F) -> F::Output {
    CURRENT.scope(progress, f).await
}

/// The progress of the surrounding [`with_progress`], if any.
pub fn current() -> Option<Arc<dyn Progress>> {
    CURRENT.try_with(Arc::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Count(AtomicU64);
    impl Progress for Count {
        fn advance(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn progress_is_seen_inside_the_scope_only() {
        assert!(current().is_none());
        let count = Arc::new(Count::default());
        with_progress(count.clone(), async {
            current().expect("inside the scope").advance();
        })
        .await;
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(current().is_none());
    }
}
