//! Which route a request asks for: a pure function of its method and path.

use hyper::Method;

/// What the service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/`: the status page.
    Page,
    /// `/metrics`: OpenMetrics text.
    Metrics,
    /// `/status.json`: what `keymash status --json` prints.
    Status,
    /// `/history.json`: the per-second samples of the last minutes.
    History,
    /// `/snapshot.jpg`: the picture on the screen now.
    Snapshot,
    /// `/stream.mjpg`: the picture on the screen as MJPEG.
    Stream,
}

/// A request no route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// 404.
    NotFound,
    /// 405: the service is read-only; only GET and HEAD exist.
    MethodNotAllowed,
}

/// The methods every route allows (the `Allow` header of a 405).
pub(crate) const ALLOWED: &str = "GET, HEAD";

impl Route {
    /// The route for `path` (without its query string, which no route uses) and `method`.
    pub(crate) fn of(method: &Method, path: &str) -> Result<Route, Miss> {
        let route = match path {
            "/" | "/index.html" => Route::Page,
            "/metrics" => Route::Metrics,
            "/status.json" => Route::Status,
            "/history.json" => Route::History,
            "/snapshot.jpg" => Route::Snapshot,
            "/stream.mjpg" => Route::Stream,
            _ => return Err(Miss::NotFound),
        };
        if method == Method::GET || method == Method::HEAD {
            Ok(route)
        } else {
            Err(Miss::MethodNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_answers_get_and_head_only() {
        let table = [
            ("/", Route::Page),
            ("/index.html", Route::Page),
            ("/metrics", Route::Metrics),
            ("/status.json", Route::Status),
            ("/history.json", Route::History),
            ("/snapshot.jpg", Route::Snapshot),
            ("/stream.mjpg", Route::Stream),
        ];
        for (path, route) in table {
            assert_eq!(Route::of(&Method::GET, path), Ok(route), "{path}");
            assert_eq!(Route::of(&Method::HEAD, path), Ok(route), "{path}");
            for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
                assert_eq!(
                    Route::of(&method, path),
                    Err(Miss::MethodNotAllowed),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn unknown_paths_are_not_found_whatever_the_method() {
        for path in [
            "/favicon.ico",
            "/metrics/",
            "/status",
            "//",
            "/stream.mjpg/x",
            "",
        ] {
            assert_eq!(Route::of(&Method::GET, path), Err(Miss::NotFound), "{path}");
            assert_eq!(
                Route::of(&Method::POST, path),
                Err(Miss::NotFound),
                "{path}"
            );
        }
    }
}
