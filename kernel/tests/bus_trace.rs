//! The event bus (shared topics, lag reporting) and trace propagation across actors.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use kernel::{
    Actor, BoxError, Bus, ChildSpec, Ctx, Kernel, RecvError, Restart, Strategy, SupervisorSpec,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::Instrument;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[tokio::test]
async fn topics_are_shared_by_name_and_type_and_lag_is_reported() {
    let bus = Bus::default();
    let topic = bus.topic_with_capacity::<u32>("n", 4);
    let mut sub = topic.subscribe();
    for n in 0..10 {
        topic.publish(n);
    }
    assert_eq!(sub.recv().await, Err(RecvError::Lagged(6)));
    for n in 6..10 {
        assert_eq!(sub.recv().await, Ok(n));
    }
    assert_eq!(sub.try_recv(), Ok(None));

    // Same name and type: the same topic. Same name, other type: another topic.
    let mut strings = bus.topic::<String>("n").subscribe();
    assert_eq!(bus.topic::<u32>("n").publish(42), 1);
    assert_eq!(sub.recv().await, Ok(42));
    assert_eq!(strings.try_recv(), Ok(None));
}

/// One recorded span: its name, `path` field, and its parent's record index.
#[derive(Debug, Clone)]
struct SpanRec {
    id: u64,
    name: &'static str,
    path: Option<String>,
    parent: Option<usize>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SpanRec>>>);

struct PathField(Option<String>);

impl Visit for PathField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "path" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = match attrs.parent() {
            Some(p) => Some(p.clone()),
            None if attrs.is_contextual() => ctx.current_span().id().cloned(),
            None => None,
        };
        let mut path = PathField(None);
        attrs.record(&mut path);
        let mut spans = self.0.lock();
        // Ids are reused after spans close: the parent is the latest span with that id.
        let parent = parent.and_then(|p| spans.iter().rposition(|s| s.id == p.into_u64()));
        spans.push(SpanRec {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            path: path.0,
            parent,
        });
    }
}

enum AMsg {
    Forward(oneshot::Sender<()>),
}
struct A;
impl Actor for A {
    type Msg = AMsg;
    async fn handle(
        &mut self,
        AMsg::Forward(reply): AMsg,
        ctx: &Ctx<Self>,
    ) -> Result<(), BoxError> {
        let b = ctx.kernel().lookup::<BMsg>("t/b").ok_or("no b")?;
        b.send(BMsg(reply)).await.map_err(|_| "b closed")?;
        Ok(())
    }
}

struct BMsg(oneshot::Sender<()>);
struct B;
impl Actor for B {
    type Msg = BMsg;
    async fn handle(&mut self, BMsg(reply): BMsg, _ctx: &Ctx<Self>) -> Result<(), BoxError> {
        tracing::info_span!("b.work").in_scope(|| ());
        let _ = reply.send(());
        Ok(())
    }
}

/// The current-thread test runtime polls every task on this thread, so a thread-local default
/// subscriber sees every span.
#[tokio::test]
async fn a_trace_follows_a_request_across_actors() {
    let recorder = Recorder::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let k = Kernel::new();
    let spec = SupervisorSpec::new("t", Strategy::OneForOne)
        .child(ChildSpec::actor("a", "relay", Restart::Permanent, || A))
        .child(ChildSpec::actor("b", "sink", Restart::Permanent, || B));
    k.start(spec).await.unwrap();
    let a = k.lookup::<AMsg>("t/a").unwrap();
    a.call(AMsg::Forward, Duration::from_secs(5))
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();

    let spans = recorder.0.lock().clone();
    let lineage = |i: usize| {
        let mut out = vec![];
        let mut at = Some(i);
        while let Some(j) = at {
            out.push((spans[j].name, spans[j].path.clone().unwrap_or_default()));
            at = spans[j].parent;
        }
        out
    };
    let work = spans.iter().rposition(|s| s.name == "b.work").unwrap();
    assert_eq!(
        lineage(work),
        [
            ("b.work", String::new()),
            ("actor.handle", "t/b".into()),
            ("actor.handle", "t/a".into()),
            ("request", String::new())
        ]
    );
    // Every child task runs in its own span.
    for path in ["t", "t/a", "t/b"] {
        assert!(
            spans
                .iter()
                .any(|s| s.name == "child" && s.path.as_deref() == Some(path)),
            "{path}"
        );
    }
}
