//! Mapping applies run in the background in `serve`, with a progress record the wizard's
//! progress page shows (a `<progress>` element a small inline script keeps current; without
//! script the page refreshes itself). Jobs live in memory: they belong to one process, so the
//! Lambda console applies within its request instead.

use bridge::engine::api::{self, ApiRequest, ApiResponse};
use bridge::mapping::Progress;
use bridge::mapping::scoped_progress;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Finished jobs are forgotten after this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// At most this many jobs are kept (the oldest finished ones go first).
const MAX_JOBS: usize = 50;

/// Where one apply stands.
#[derive(Debug, Clone)]
pub struct JobView {
    pub connection: String,
    /// The current phase ("mapping organizations", "default contacts", …) and its steps.
    pub phase: String,
    pub done: u64,
    pub total: u64,
    /// Phases begun so far.
    pub phases: u32,
    /// The wizard's form as submitted (organizations, match, auto_create), to show it again.
    pub form: Vec<(String, String)>,
    /// The API's answer, once the apply has finished.
    pub result: Option<ApiResponse>,
}

struct Job {
    session: String,
    started: Instant,
    finished: Option<Instant>,
    view: JobView,
}

/// The applies of this process, by job id.
#[derive(Clone, Default)]
pub struct ApplyJobs(Arc<Mutex<HashMap<String, Job>>>);

impl ApplyJobs {
    /// Starts the admin API's mapping apply for `connection` in the background, as `key`; returns
    /// the job id. Only `session` may look at it.
    pub fn start(&self, engine: Arc<bridge::engine::Engine>, call: ApplyCall) -> String {
        let id = super::session::random_token();
        let view = JobView {
            connection: call.connection.clone(),
            phase: "starting".into(),
            done: 0,
            total: 0,
            phases: 0,
            form: call.form.clone(),
            result: None,
        };
        if let Ok(mut jobs) = self.0.lock() {
            prune(&mut jobs);
            jobs.insert(
                id.clone(),
                Job { session: call.session.clone(), started: Instant::now(), finished: None, view },
            );
        }
        let progress: Arc<dyn Progress> = Arc::new(JobProgress { jobs: self.clone(), id: id.clone() });
        let (jobs, job) = (self.clone(), id.clone());
        tokio::spawn(async move {
            let headers = super::api_headers(call.key.as_deref(), "text/csv");
            let path = format!("/v1/admin/connections/{}/mappings/apply", super::html::url_part(&call.connection));
            let req = ApiRequest {
                method: "POST",
                path: &path,
                query: Some(&call.query),
                headers: &headers,
                body: call.csv.as_bytes(),
                peer_loopback: call.loopback,
            };
            let res = scoped_progress::with_progress(progress, api::handle(&engine, req, chrono::Utc::now())).await;
            jobs.update(&job, |j| {
                j.view.result = Some(res);
                j.finished = Some(Instant::now());
            });
        });
        id
    }

    /// The job `id`, if it exists and belongs to `session`.
    pub fn view(&self, id: &str, session: &str) -> Option<JobView> {
        let jobs = self.0.lock().ok()?;
        jobs.get(id).filter(|j| j.session == session).map(|j| j.view.clone())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Ok(mut jobs) = self.0.lock()
            && let Some(j) = jobs.get_mut(id)
        {
            f(j);
        }
    }
}

/// What a background apply sends to the admin API.
pub struct ApplyCall {
    pub session: String,
    pub key: Option<String>,
    pub loopback: bool,
    pub connection: String,
    /// `match=…&auto_create=…`
    pub query: String,
    pub csv: String,
    pub form: Vec<(String, String)>,
}

fn prune(jobs: &mut HashMap<String, Job>) {
    jobs.retain(|_, j| j.finished.is_none_or(|f| f.elapsed() < KEEP_FINISHED));
    while jobs.len() >= MAX_JOBS {
        let oldest = jobs.iter().min_by_key(|(_, j)| (j.finished.is_none(), j.started)).map(|(k, _)| k.clone());
        match oldest {
            Some(k) => jobs.remove(&k),
            None => break,
        };
    }
}

struct JobProgress {
    jobs: ApplyJobs,
    id: String,
}

impl Progress for JobProgress {
    fn begin(&self, total: u64, message: &str) {
        self.jobs.update(&self.id, |j| {
            j.view.phase = message.to_string();
            j.view.total = total;
            j.view.done = 0;
            j.view.phases += 1;
        });
    }
    fn advance(&self) {
        self.jobs.update(&self.id, |j| j.view.done = (j.view.done + 1).min(j.view.total));
    }
    fn finish(&self) {
        self.jobs.update(&self.id, |j| j.view.done = j.view.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(session: &str, finished: Option<Instant>) -> Job {
        let view = JobView {
            connection: "c".into(),
            phase: String::new(),
            done: 0,
            total: 0,
            phases: 0,
            form: vec![],
            result: None,
        };
        Job { session: session.into(), started: Instant::now(), finished, view }
    }

    #[test]
    fn progress_moves_through_phases_and_only_its_session_sees_it() {
        let jobs = ApplyJobs::default();
        jobs.0.lock().unwrap().insert("j".into(), job("s1", None));
        let p = JobProgress { jobs: jobs.clone(), id: "j".into() };
        p.begin(3, "mapping organizations");
        p.advance();
        let v = jobs.view("j", "s1").unwrap();
        assert_eq!((v.phase.as_str(), v.done, v.total, v.phases), ("mapping organizations", 1, 3, 1));
        for _ in 0..5 {
            p.advance();
        }
        assert_eq!(jobs.view("j", "s1").unwrap().done, 3, "never past the total");
        p.begin(2, "default contacts");
        let v = jobs.view("j", "s1").unwrap();
        assert_eq!((v.phase.as_str(), v.done, v.total, v.phases), ("default contacts", 0, 2, 2));
        p.finish();
        assert_eq!(jobs.view("j", "s1").unwrap().done, 2);
        assert!(jobs.view("j", "s2").is_none(), "another session cannot see the job");
        assert!(jobs.view("nope", "s1").is_none());
    }

    #[test]
    fn pruning_drops_old_finished_jobs_and_keeps_the_count_bounded() {
        let mut map = HashMap::new();
        let long_ago = Instant::now().checked_sub(KEEP_FINISHED + Duration::from_secs(1));
        map.insert("old".to_string(), job("s", long_ago));
        map.insert("running".to_string(), job("s", None));
        prune(&mut map);
        assert!(!map.contains_key("old") && map.contains_key("running"));
        for i in 0..MAX_JOBS + 5 {
            map.insert(format!("f{i}"), job("s", Some(Instant::now())));
        }
        prune(&mut map);
        assert!(map.len() < MAX_JOBS && map.contains_key("running"), "finished jobs go before running ones");
    }
}
