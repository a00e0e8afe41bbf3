//! Table `links`: the container graph, as Docker's GraphDB kept it (`--link child:alias` makes an
//! edge parent -> child named alias).
//!
//! Removing the parent removes its links (`ON DELETE CASCADE`); removing a child that parents
//! still link to is refused (`ON DELETE RESTRICT`, reported as [`Error::ContainerLinked`]), which
//! enforces the planner's "users before their targets" removal order. The graph stays acyclic:
//! an edge that would close a cycle is refused.

use rusqlite::{Row, params};

use super::{Error, Result, Tx};

/// One edge of the container graph: `parent` reaches `child` under the name `alias`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkRecord {
    pub parent: String,
    pub child: String,
    pub alias: String,
}

const COLUMNS: &str = "parent, child, alias";

fn link_row(r: &Row<'_>) -> rusqlite::Result<LinkRecord> {
    Ok(LinkRecord {
        parent: r.get(0)?,
        child: r.get(1)?,
        alias: r.get(2)?,
    })
}

impl Tx<'_> {
    /// Records `link` (an alias already used by the parent now points at the new child). Both
    /// containers must be recorded; self-links and cycles are refused.
    pub fn add_link(&self, link: &LinkRecord) -> Result<()> {
        let invalid = |reason: String| Error::Invalid {
            what: format!("link {} -> {} (as {})", link.parent, link.child, link.alias),
            reason,
        };
        if link.alias.is_empty() {
            return Err(invalid("the alias is empty".into()));
        }
        if link.parent == link.child {
            return Err(invalid("a container cannot link to itself".into()));
        }
        self.require_container(&link.parent)?;
        self.require_container(&link.child)?;
        // Would the new edge close a cycle? It does if the parent is reachable from the child.
        let reaches: i64 = self.conn().query_row(
            "WITH RECURSIVE reach(name) AS (
                 SELECT ?1
                 UNION
                 SELECT l.child FROM links l JOIN reach r ON l.parent = r.name
             )
             SELECT COUNT(*) FROM reach WHERE name = ?2",
            params![link.child, link.parent],
            |r| r.get(0),
        )?;
        if reaches > 0 {
            return Err(invalid(format!(
                "{} already reaches {} through links; links must not form a cycle",
                link.child, link.parent
            )));
        }
        self.conn().execute(
            "INSERT INTO links (parent, child, alias) VALUES (?1, ?2, ?3)
             ON CONFLICT(parent, alias) DO UPDATE SET child = excluded.child",
            params![link.parent, link.child, link.alias],
        )?;
        Ok(())
    }

    /// Replaces every link of `parent` with `links`, all or nothing.
    pub fn set_links(&self, parent: &str, links: &[LinkRecord]) -> Result<()> {
        self.require_container(parent)?;
        self.conn()
            .execute("DELETE FROM links WHERE parent = ?1", [parent])?;
        for l in links {
            if l.parent != parent {
                return Err(Error::Invalid {
                    what: format!("links of container {parent}"),
                    reason: format!("link {} -> {} names another parent", l.parent, l.child),
                });
            }
            self.add_link(l)?;
        }
        Ok(())
    }

    /// Every link, by parent and alias.
    pub fn links(&self) -> Result<Vec<LinkRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM links ORDER BY parent, alias");
        self.collect(&sql, [], link_row)
    }

    /// The links `parent` has (its targets), by alias.
    pub fn links_from(&self, parent: &str) -> Result<Vec<LinkRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM links WHERE parent = ?1 ORDER BY alias");
        self.collect(&sql, [parent], link_row)
    }

    /// The links pointing at `child` (its users), by parent and alias.
    pub fn links_to(&self, child: &str) -> Result<Vec<LinkRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM links WHERE child = ?1 ORDER BY parent, alias");
        self.collect(&sql, [child], link_row)
    }

    /// Removes the link `alias` of `parent`; true if it existed.
    pub fn remove_link(&self, parent: &str, alias: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM links WHERE parent = ?1 AND alias = ?2",
            [parent, alias],
        )?;
        Ok(n > 0)
    }
}
