//! Routes live in the URL hash (`#/`, `#/jobs?page=2`, `#/jobs/ID`): the server serves one
//! `index.html` and needs no routing of its own, and links and the back button just work.

/// A page of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Choose a file, inspect it, set options, upload.
    Upload,
    /// The owner's jobs, newest first.
    Jobs { page: u32 },
    /// One job: live stages, then the report.
    Job { id: String },
}

impl Route {
    /// Parses a `location.hash` (with or without the leading `#`).
    pub fn parse(hash: &str) -> Route {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        match (parts.next(), parts.next(), parts.next()) {
            (Some("jobs"), None, None) => Route::Jobs {
                page: query_value(query, "page")
                    .and_then(|p| p.parse().ok())
                    .filter(|&p| p >= 1)
                    .unwrap_or(1),
            },
            (Some("jobs"), Some(id), None) if is_id(id) => Route::Job { id: id.to_owned() },
            _ => Route::Upload,
        }
    }

    /// The hash that leads here.
    pub fn hash(&self) -> String {
        match self {
            Route::Upload => "#/".to_owned(),
            Route::Jobs { page: 1 } => "#/jobs".to_owned(),
            Route::Jobs { page } => format!("#/jobs?page={page}"),
            Route::Job { id } => format!("#/jobs/{id}"),
        }
    }

    /// The document title for this route.
    pub fn title(&self) -> String {
        let page = match self {
            Route::Upload => "Convert a checkpoint".to_owned(),
            Route::Jobs { .. } => "Jobs".to_owned(),
            Route::Job { id } => format!("Job {}", id.get(..8).unwrap_or(id)),
        };
        format!("{page} — yolots")
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Job ids are UUIDs; anything else in the hash is not ours to put into a URL.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_route() {
        for route in [
            Route::Upload,
            Route::Jobs { page: 1 },
            Route::Jobs { page: 3 },
            Route::Job {
                id: "0b6f3c1e-8e8a-4d5e-9a43-3f6a8f0c2d11".to_owned(),
            },
        ] {
            assert_eq!(Route::parse(&route.hash()), route);
        }
        assert_eq!(Route::parse(""), Route::Upload);
        assert_eq!(Route::parse("#/nowhere"), Route::Upload);
        assert_eq!(Route::parse("#/jobs?page=0"), Route::Jobs { page: 1 });
        assert_eq!(Route::parse("#/jobs/../../x"), Route::Upload);
        assert_eq!(Route::parse("#/jobs/a%2Fb"), Route::Upload);
    }
}
