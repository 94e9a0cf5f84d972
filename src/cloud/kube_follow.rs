//! Named Kubernetes objects followed by watches instead of polled: the first
//! read is a GET, then one watch per object (`fieldSelector=metadata.name=…`,
//! renewed every few minutes) keeps a copy current, so waiting on an object costs
//! a handful of API calls a minute whatever the poll interval. When a watch
//! fails, the next read is a GET again (and starts a new watch). What a write of
//! ours returned is put in the copy at once, so a read right after our own write
//! never shows the object from before it. A waiter can sleep until the next
//! change a watch brings ([`Followed::changed`]) instead of a whole poll interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, WatchEvent, WatchParams};
use serde_json::Value;

/// How long one watch request lasts before it is renewed.
const WATCH_SECONDS: u32 = 290;

#[derive(Default)]
struct Seen {
    /// The object as last seen (`None`: deleted).
    latest: Option<Value>,
    /// A watch runs: `latest` is current.
    live: bool,
}

/// Aborts the watches when the last clone of the [`Followed`] goes.
#[derive(Default)]
struct Tasks(Mutex<Vec<tokio::task::AbortHandle>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in self.0.lock().expect("not poisoned").drain(..) {
            h.abort();
        }
    }
}

/// Objects of one resource in one namespace, read through watches.
#[derive(Clone)]
pub struct Followed {
    api: Api<DynamicObject>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    tasks: Arc<Tasks>,
    /// Woken at every event a watch brings.
    changes: Arc<tokio::sync::Notify>,
}

/// The resourceVersion of `obj` as a number, when it is one (etcd's are).
fn rv(obj: &Value) -> Option<u64> {
    obj["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

impl Followed {
    /// Follows objects through `api`.
    pub fn new(api: Api<DynamicObject>) -> Self {
        Followed {
            api,
            seen: Arc::default(),
            tasks: Arc::default(),
            changes: Arc::default(),
        }
    }

    /// Returns at the next change a watch brings, or after `at_most`: a wait
    /// loop reads again as soon as the object moved, and never later than its
    /// poll interval (a change between the read and this call is seen then).
    pub async fn changed(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.changes.notified()).await;
    }

    /// The object `name` as its watch last saw it, or read now (and watched
    /// from then on); `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Value>, kube::Error> {
        let cached = {
            let seen = self.seen.lock().expect("not poisoned");
            seen.get(name).filter(|s| s.live).map(|s| s.latest.clone())
        };
        if let Some(obj) = cached {
            return Ok(obj);
        }
        let obj = self
            .api
            .get_opt(name)
            .await?
            .map(|o| serde_json::to_value(o).expect("serializes"));
        if let Some(version) = obj
            .as_ref()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str())
        {
            self.watch(name, version.to_string(), obj.clone());
        }
        Ok(obj)
    }

    /// Puts what a write of ours returned into the copy (unless the watch has
    /// already brought a newer one).
    pub fn saw(&self, obj: &Value) {
        let Some(name) = obj["metadata"]["name"].as_str() else {
            return;
        };
        let mut seen = self.seen.lock().expect("not poisoned");
        if let Some(s) = seen.get_mut(name) {
            let newer = match (s.latest.as_ref().and_then(rv), rv(obj)) {
                (Some(have), Some(got)) => got >= have,
                _ => true,
            };
            if newer {
                s.latest = Some(obj.clone());
            }
        }
    }

    /// What the copy holds for `name` without a request: the object as last
    /// seen (`None`: deleted) and whether its watch still runs; `None` when
    /// `name` was never read.
    pub fn peek(&self, name: &str) -> Option<(Option<Value>, bool)> {
        let seen = self.seen.lock().expect("not poisoned");
        seen.get(name).map(|s| (s.latest.clone(), s.live))
    }

    /// Forgets `name` (after we deleted it): the next read is a GET.
    pub fn forget(&self, name: &str) {
        self.seen.lock().expect("not poisoned").remove(name);
    }

    fn watch(&self, name: &str, from: String, now: Option<Value>) {
        {
            let mut seen = self.seen.lock().expect("not poisoned");
            let s = seen.entry(name.to_string()).or_default();
            s.latest = now;
            s.live = true;
        }
        let api = self.api.clone();
        let seen = self.seen.clone();
        let changes = self.changes.clone();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let set = |latest: Option<Option<Value>>, live: bool| {
                let mut m = seen.lock().expect("not poisoned");
                let s = m.entry(name.clone()).or_default();
                if let Some(l) = latest {
                    let older = match (s.latest.as_ref().and_then(rv), l.as_ref().and_then(rv)) {
                        (Some(have), Some(got)) => got < have,
                        _ => false,
                    };
                    if !older {
                        s.latest = l;
                    }
                }
                s.live = live;
                drop(m);
                changes.notify_waiters();
            };
            let mut version = from;
            loop {
                let wp = WatchParams::default()
                    .fields(&format!("metadata.name={name}"))
                    .timeout(WATCH_SECONDS);
                let Ok(stream) = api.watch(&wp, &version).await else {
                    break;
                };
                let mut stream = Box::pin(stream);
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => {
                            if let Some(v) = &o.metadata.resource_version {
                                version = v.clone();
                            }
                            set(Some(serde_json::to_value(o).ok()), true);
                        }
                        Ok(WatchEvent::Deleted(_)) => set(Some(None), true),
                        Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                        Ok(WatchEvent::Error(_)) | Err(_) => {
                            set(None, false);
                            return;
                        }
                    }
                }
            }
            set(None, false);
        });
        self.tasks
            .0
            .lock()
            .expect("not poisoned")
            .push(task.abort_handle());
    }
}
