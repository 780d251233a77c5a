//! detach: remove exactly what attach made for one id, found by name and
//! alias, so it works after a crash at any step and is idempotent.
use rtnetlink::Handle;
use serde::Serialize;

use crate::error::Result;
use crate::link::{self, Link};
use crate::names;
use crate::netns::{connect, label_of, run_dedicated, Netns};

/// What detach removed (empty when there was nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetachReport {
    pub removed: Vec<String>,
}

/// Remove the interfaces of container `id`. `target` may be None when the
/// container netns is already gone (its interfaces went with it; only the host
/// end of a veth can remain).
pub fn detach(target: Option<&Netns>, host: Option<&Netns>, id: &str) -> Result<DetachReport> {
    names::validate_id(id)?;
    run_dedicated(|rt| {
        rt.block_on(async {
            if let Some(h) = host {
                h.enter()?;
            }
            let hh = connect(label_of(host))?;
            let th = match target {
                Some(t) => {
                    t.enter()?;
                    Some(connect(t.label())?)
                }
                None => None,
            };
            let removed =
                remove_for_id(&hh, th.as_ref(), label_of(host), label_of(target), id).await?;
            Ok(DetachReport { removed })
        })
    })
}

/// Is this host-side link one we made for `id`? Our alias, or, for the short
/// window between creating a veth and tagging it, a veth with our derived name
/// and no alias at all (a foreign link with that exact name and no alias would
/// have to be a veth too to be taken for ours).
pub(crate) fn is_ours(l: &Link, id: &str) -> bool {
    l.alias == names::alias(id)
        || (l.alias.is_empty() && l.kind == "veth" && l.name == names::host_veth(id))
}

/// The shared removal used by detach and by the undo of a failed attach.
pub(crate) async fn remove_for_id(
    hh: &Handle,
    th: Option<&Handle>,
    host: &str,
    target: &str,
    id: &str,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let host_name = names::host_veth(id);
    if let Some(l) = link::by_name(hh, host, &host_name).await? {
        if is_ours(&l, id) {
            link::delete(hh, host, &l).await?;
            removed.push(format!("{host}:{}", l.name));
        }
    }
    if let Some(th) = th {
        let temp = names::temp_name(id);
        let tag = names::alias(id);
        for l in link::list(th, target).await? {
            // In the container netns, the temporary name is ours by construction.
            if l.alias == tag || l.name == temp {
                link::delete(th, target, &l).await?;
                removed.push(format!("{target}:{}", l.name));
            }
        }
    }
    Ok(removed)
}
