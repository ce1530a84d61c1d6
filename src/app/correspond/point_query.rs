//! The point-query thread of the correspondence view: the library's `query_point` on descriptors
//! already computed, off the UI thread (log-binned descriptors of a large image are ~100 MB to
//! stream per query). Only the newest request is answered; older ones still queued are dropped.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use super::correspond_job::{CorrImage, CorrSpec};
use super::worker::{Event, EventSender, ImageId};
use crate::analysis::correspond::{PointQuery, query_point};

/// One query: the point on the source against the targets.
pub struct QueryRequest {
    /// Counts up with every request.
    pub serial: u64,
    pub spec: CorrSpec,
    pub source: Arc<CorrImage>,
    pub targets: Vec<Arc<CorrImage>>,
    /// Original-image pixel-index coordinates `(x, y)`.
    pub point: (f64, f64),
}

/// Its answer.
#[derive(Clone, Debug)]
pub struct QueryAnswer {
    pub serial: u64,
    pub spec: CorrSpec,
    pub source: ImageId,
    pub targets: Vec<ImageId>,
    pub point: (f64, f64),
    pub query: Arc<PointQuery>,
    /// Time the query took on the thread.
    pub elapsed: Duration,
}

/// The UI side: sends requests; answers come back as [`Event::PointAnswer`].
pub struct PointQueries {
    requests: Option<Sender<QueryRequest>>,
    events: EventSender,
}

impl PointQueries {
    pub fn new(events: EventSender) -> Self {
        PointQueries {
            requests: None,
            events,
        }
    }

    /// Queues a request (the thread starts on the first one).
    pub fn send(&mut self, request: QueryRequest) {
        if self.requests.is_none() {
            let (tx, rx) = channel();
            let events = self.events.clone();
            let spawned = std::thread::Builder::new()
                .name("dinoscope-point-query".into())
                .spawn(move || answer_loop(rx, events));
            if spawned.is_err() {
                // No thread: answer here (small queries only reach this on a broken system).
                self.events.send(Event::PointAnswer(answer(request)));
                return;
            }
            self.requests = Some(tx);
        }
        if let Some(tx) = &self.requests
            && let Err(failed) = tx.send(request)
        {
            self.requests = None;
            self.events.send(Event::PointAnswer(answer(failed.0)));
        }
    }
}

fn answer(request: QueryRequest) -> QueryAnswer {
    let start = Instant::now();
    let targets: Vec<_> = request.targets.iter().map(|t| &t.descriptors).collect();
    let query = query_point(&request.source.descriptors, request.point, &targets);
    QueryAnswer {
        serial: request.serial,
        spec: request.spec,
        source: request.source.id,
        targets: request.targets.iter().map(|t| t.id).collect(),
        point: request.point,
        query: Arc::new(query),
        elapsed: start.elapsed(),
    }
}

fn answer_loop(requests: Receiver<QueryRequest>, events: EventSender) {
    while let Ok(mut request) = requests.recv() {
        // Only the newest request matters.
        while let Ok(newer) = requests.try_recv() {
            request = newer;
        }
        events.send(Event::PointAnswer(answer(request)));
    }
}
