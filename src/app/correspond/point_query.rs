//! The point-query thread of the correspondence view: the library's `query_point` on descriptors
//! already computed, off the UI thread (log-binned descriptors of a large image are ~100 MB to
//! stream per query). Only the newest request is answered; older ones still queued are dropped.
//! A query never runs on the UI thread: without its thread the view shows an error instead.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use super::job::{CorrImage, CorrSpec};
use crate::analysis::correspond::{PointQuery, query_point};
use crate::app::notifications::AppError;
use crate::app::tasks::{Event, EventSender, ImageId, Output};
use crate::panics;

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

/// The point queries of the correspondence view.
pub type PointQueries = NewestOnly<QueryRequest>;

impl PointQueries {
    pub fn new(events: EventSender) -> Self {
        NewestOnly::with_answer(events, |request| -> Output { Box::new(answer(request)) })
    }
}

/// A thread that answers the newest of its queued requests with `answer` (sent back as an
/// [`Event::Output`]); a request that panics is an error message, and the thread goes on.
pub struct NewestOnly<R> {
    requests: Option<Sender<R>>,
    events: EventSender,
    answer: fn(R) -> Output,
}

impl<R: Send + 'static> NewestOnly<R> {
    pub fn with_answer(events: EventSender, answer: fn(R) -> Output) -> Self {
        NewestOnly {
            requests: None,
            events,
            answer,
        }
    }

    /// Queues a request (the thread starts on the first one, and again after it stopped).
    pub fn send(&mut self, request: R) {
        if self.requests.is_none() {
            let (tx, rx) = channel();
            let (events, answer) = (self.events.clone(), self.answer);
            let spawned = std::thread::Builder::new()
                .name("dinoscope-point-query".into())
                .spawn(move || answer_loop(rx, events, answer));
            if let Err(e) = spawned {
                self.stopped(e.to_string());
                return;
            }
            self.requests = Some(tx);
        }
        if let Some(tx) = &self.requests
            && tx.send(request).is_err()
        {
            self.requests = None;
            self.stopped("the thread has stopped".into());
        }
    }

    fn stopped(&self, detail: String) {
        self.events.send(Event::Error(AppError::Compute {
            what: "the point query".into(),
            detail,
        }));
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

fn answer_loop<R>(requests: Receiver<R>, events: EventSender, answer: fn(R) -> Output) {
    while let Ok(mut request) = requests.recv() {
        // Only the newest request matters.
        while let Ok(newer) = requests.try_recv() {
            request = newer;
        }
        match catch_unwind(AssertUnwindSafe(|| answer(request))) {
            Ok(output) => events.send(Event::Output(output)),
            Err(payload) => events.send(Event::Error(AppError::Compute {
                what: "the point query".into(),
                detail: panics::message(payload.as_ref()),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tasks::Tasks;
    use eframe::egui;

    /// Answers with the thread's name; 0 panics.
    fn named(n: u32) -> Output {
        assert!(n != 0, "query {n} failed");
        Box::new((n, std::thread::current().name().map(str::to_string)))
    }

    fn next_event(tasks: &Tasks) -> Event {
        let start = Instant::now();
        loop {
            if let Some(event) = tasks.try_recv() {
                return event;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no answer");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_panicking_query_is_an_error_and_the_next_is_answered_on_the_query_thread() {
        let tasks = Tasks::new(egui::Context::default());
        let mut queries = NewestOnly::with_answer(tasks.sender(), named);
        queries.send(0);
        match next_event(&tasks) {
            Event::Error(e) => assert!(e.to_string().contains("query 0 failed"), "{e}"),
            _ => panic!("expected the panic as an error"),
        }
        queries.send(7);
        let Event::Output(output) = next_event(&tasks) else {
            panic!("expected an answer");
        };
        let answered = output.downcast::<(u32, Option<String>)>().map(|b| *b).ok();
        assert_eq!(
            answered,
            Some((7, Some("dinoscope-point-query".to_string()))),
            "answered on the query thread, not the caller's"
        );
    }
}
