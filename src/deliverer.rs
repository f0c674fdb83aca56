//! A worker's notification webhooks in flight (`plaid_sync.notify_url`): claimed from
//! `plaid_sync.deliveries`, each sent on a thread of its own (never a job's slot, so a slow or
//! absent receiver delays no sync), recorded on the main thread when it finishes. Every
//! worker delivers; the claim takes only each Item's oldest pending event, so an Item's events
//! arrive in order.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use crate::database::bridge::Bell;
use crate::database::try_db;
use crate::delivery::{GIVE_UP_AFTER_S, backoff_s, signature};
use crate::gucs;
use crate::store::deliveries::{self, Claimed};

/// Sends in flight per worker at most.
const SLOTS: usize = 4;
/// A worker looks for due deliveries at most this often (its loop also wakes at least once a
/// second while notify_url is set, src/worker.rs).
const LOOK_EVERY: Duration = Duration::from_millis(250);

type Sent = (i64, i32, Result<(), String>);

pub struct Deliverer {
    bell: Arc<Bell>,
    done_tx: Sender<Sent>,
    done: Receiver<Sent>,
    in_flight: usize,
    last_look: Option<Instant>,
}

impl Deliverer {
    pub fn new(bell: Arc<Bell>) -> Deliverer {
        let (done_tx, done) = channel();
        Deliverer {
            bell,
            done_tx,
            done,
            in_flight: 0,
            last_look: None,
        }
    }

    /// Whether deliveries are on (the loop then sleeps at most a second).
    pub fn on() -> bool {
        gucs::notify_url().is_some()
    }

    /// Records finished sends, then claims and starts due ones.
    pub fn serve(&mut self) {
        while let Ok((id, attempts, result)) = self.done.try_recv() {
            self.in_flight -= 1;
            let recorded = try_db(|| match &result {
                Ok(()) => deliveries::delivered(id),
                Err(e) => {
                    let retry_in = backoff_s(attempts, rand::random::<f64>());
                    deliveries::failed(id, e, retry_in, GIVE_UP_AFTER_S)
                }
            });
            if let Err(e) = recorded {
                // The lease brings it back.
                pgrx::log!("plaid_sync: delivery {id} could not be recorded: {e}");
            }
        }
        let Some(url) = gucs::notify_url() else {
            return;
        };
        if self.in_flight >= SLOTS || self.last_look.is_some_and(|t| t.elapsed() < LOOK_EVERY) {
            return;
        }
        self.last_look = Some(Instant::now());
        let free = (SLOTS - self.in_flight) as i64;
        let claimed = match try_db(|| deliveries::claim(free)) {
            Ok(claimed) if !claimed.is_empty() => claimed,
            // Nothing due; or the extension dropped or being updated: the next look tells.
            _ => return,
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(gucs::connect_timeout_ms()))
            .timeout(Duration::from_millis(gucs::request_timeout_ms()))
            .redirects(0)
            .build();
        let secret = gucs::notify_secret();
        for d in claimed {
            self.send(d, agent.clone(), url.clone(), secret.clone());
        }
    }

    fn send(&mut self, d: Claimed, agent: ureq::Agent, url: String, secret: Option<String>) {
        let (done, bell) = (self.done_tx.clone(), self.bell.clone());
        let started = std::thread::Builder::new()
            .name("plaid_sync delivery".into())
            .spawn(move || {
                crate::job_threads::block_signals();
                let result = post(&agent, &url, secret.as_deref(), &d);
                let _ = done.send((d.id, d.attempts, result));
                bell.ring();
            });
        if started.is_ok() {
            self.in_flight += 1;
        } // else the lease brings it back
    }
}

/// One try. Errors name what failed, never the URL (it may hold credentials).
fn post(agent: &ureq::Agent, url: &str, secret: Option<&str>, d: &Claimed) -> Result<(), String> {
    let mut request = agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("Plaid-Sync-Event-Id", &d.event_id);
    if let Some(secret) = secret {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        request = request.set("Plaid-Sync-Signature", &signature(secret, t, &d.body));
    }
    match request.send_string(&d.body) {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(format!("the receiver answered HTTP {}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("the receiver answered HTTP {code}")),
        Err(ureq::Error::Transport(t)) => Err(format!("no answer: {:?}", t.kind())),
    }
}
