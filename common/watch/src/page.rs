//! The status page keymash-web serves at `/`: one self-contained HTML file (no external assets:
//! the exhibit LAN has no internet) that arrives with the status and history of the moment
//! ([`render`]) and draws them before its load event, then fetches `/status.json` and
//! `/history.json` once a second; every stage's state, key numbers and rolling plots on
//! `<canvas>`, and on the receiver the picture on the screen from `/stream.mjpg`, at its own
//! size where the page is wide enough (smaller on a phone).
//!
//! Stable element ids, which tests and anyone scripting the page rely on: `live` (the picture),
//! `plot-mash`, `plot-drop`, `plot-quality`, `plot-fps` (the plots), `stages` (the table body);
//! `document.body.dataset.ready` becomes `"1"` once the first status and history are drawn, and
//! `document.body.dataset.layout` holds where the picture and the plots are on the page
//! (`{"live":{"x":..,"y":..,"w":..,"h":..},"plot-mash":{..},..}`, CSS pixels).

/// The page's template: HTML, CSS and script inline, no external assets.
pub const PAGE_HTML: &str = include_str!("page.html");

/// Where [`render`] puts the initial data and the picture's size.
const INITIAL: &str = "__KEYMASH_INITIAL__";
const PICTURE_WIDTH: &str = "__KEYMASH_WIDTH__";
const PICTURE_HEIGHT: &str = "__KEYMASH_HEIGHT__";

/// The page with `status_json` (what `/status.json` serves) and `history_json` (what
/// `/history.json` serves) inlined, and the picture's place sized `width` x `height`.
pub fn render(status_json: &str, history_json: &str, width: u32, height: u32) -> String {
    // Inside <script>, "</" could end the element early; "<\/" is the same JSON string.
    let initial =
        format!("{{\"status\":{status_json},\"history\":{history_json}}}").replace("</", "<\\/");
    PAGE_HTML
        .replacen(INITIAL, &initial, 1)
        .replacen(PICTURE_WIDTH, &width.to_string(), 1)
        .replacen(PICTURE_HEIGHT, &height.to_string(), 1)
}

#[cfg(test)]
mod tests {
    use super::PAGE_HTML;

    #[test]
    fn the_page_has_its_stable_ids_and_loads_nothing_from_elsewhere() {
        for id in [
            "id=\"live\"",
            "src=\"/stream.mjpg\"",
            "id=\"plot-mash\"",
            "id=\"plot-drop\"",
            "id=\"plot-quality\"",
            "id=\"plot-fps\"",
            "id=\"stages\"",
            "dataset.ready = \"1\"",
        ] {
            assert!(PAGE_HTML.contains(id), "{id} missing");
        }
        for external in ["http://", "https://", "//cdn", "<link", "src=\"http"] {
            assert!(!PAGE_HTML.contains(external), "the page loads {external}");
        }
    }

    #[test]
    fn the_rendered_page_holds_the_data_and_the_picture_size_and_no_placeholder() {
        let status = r#"{"prefix":"k","stages":[{"status_line":"a </script> in a line"}]}"#;
        let page = super::render(status, r#"{"capacity":60,"samples":[]}"#, 640, 480);
        assert!(!page.contains("__KEYMASH_"), "a placeholder is left");
        assert!(page.contains(r#"width="640" height="480""#));
        assert!(page.contains(r#""capacity":60"#));
        // The one </script> in the data is escaped: the data element still ends where it should.
        assert!(page.contains(r#"a <\/script> in a line"#));
        let data = page
            .split(r#"<script id="initial" type="application/json">"#)
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(parsed["status"]["prefix"], "k");
        assert_eq!(parsed["history"]["capacity"], 60);
    }
}
