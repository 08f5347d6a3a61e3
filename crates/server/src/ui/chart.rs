//! Bar charts drawn on the server as inline SVG (no script, nothing loaded from elsewhere): the
//! run history of a knowledge base and the admin page's sync activity.
//!
//! The markup carries no colour of its own: its parts have classes that the stylesheet colours
//! with the page's variables, so a chart follows the light or dark scheme like the rest of the
//! page (inline `style` attributes would be refused by the content security policy anyway). A
//! marked bar differs by shape as well as colour: a failed one carries a cross above it, one that
//! ended with errors a triangle. Each chart is an image with a title and a description for
//! assistive technology, and its figure holds the numbers as a table in a disclosure, so nothing
//! is only in the picture. Every text is escaped here (the result is inserted into a page as is).

use std::fmt::Write as _;

/// The drawing's own units (it scales to the width of its box).
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 30.0;
/// About how many labelled steps the value axis has.
const TICKS: f64 = 4.0;
/// At most this many bars are labelled under the axis (every n-th).
const X_LABELS: usize = 6;

/// How a bar stands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Plain,
    /// Ended with errors: warning colour and a triangle.
    Partial,
    /// Failed: danger colour and a cross.
    Failed,
}

impl Mark {
    fn class(self) -> &'static str {
        match self {
            Mark::Plain => "bar",
            Mark::Partial => "bar partial",
            Mark::Failed => "bar failed",
        }
    }
}

/// One bar: its value in the panel's unit, the label under it (shown for every n-th bar), the
/// text shown when pointed at, and its mark.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub tip: String,
    pub mark: Mark,
}

/// One chart of a figure: bars over one value axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// What the chart shows ("Files changed per run"); its accessible name.
    pub title: String,
    /// The value axis' unit ("files", "seconds").
    pub unit: String,
    /// A sentence or two on what it shows, for assistive technology.
    pub description: String,
    /// The values are counts: the axis steps by whole numbers.
    pub whole: bool,
    pub bars: Vec<Bar>,
}

/// The numbers behind a figure, shown as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Charts side by side with their legend and their numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Prefix of the ids in the markup; unique on its page.
    pub id: String,
    pub panels: Vec<Panel>,
    pub table: Table,
    /// Said instead of the figure when no panel has a bar.
    pub empty: String,
}

impl Figure {
    /// The figure's HTML, or a short paragraph saying there is nothing to draw.
    pub fn to_html(&self) -> String {
        if self.panels.iter().all(|p| p.bars.is_empty()) {
            return format!("<p class=\"empty\">{}</p>", escape(&self.empty));
        }
        let id = escape(&self.id);
        let mut html = format!("<figure class=\"chart-figure\" id=\"{id}\">");
        html.push_str("<div class=\"chart-panels\">");
        for (i, panel) in self.panels.iter().enumerate() {
            // The visible title repeats the image's accessible name: hidden from assistive
            // technology, which reads the image's own.
            let _ = write!(
                html,
                "<div class=\"chart-panel\"><p class=\"chart-title\" aria-hidden=\"true\">{}</p>{}</div>",
                escape(&panel.title),
                panel.to_svg(&format!("{id}-{i}"))
            );
        }
        html.push_str("</div>");
        let marks = |m: Mark| self.panels.iter().flat_map(|p| &p.bars).any(|b| b.mark == m);
        if marks(Mark::Failed) || marks(Mark::Partial) {
            html.push_str("<p class=\"chart-legend small muted\">");
            if marks(Mark::Failed) {
                html.push_str(
                    "<span><svg class=\"chart-key\" viewBox=\"0 0 12 12\" aria-hidden=\"true\">\
                     <path class=\"mark-failed\" d=\"M2 2 L10 10 M10 2 L2 10\"/></svg> failed</span>",
                );
            }
            if marks(Mark::Partial) {
                html.push_str(
                    "<span><svg class=\"chart-key\" viewBox=\"0 0 12 12\" aria-hidden=\"true\">\
                     <path class=\"mark-partial\" d=\"M6 1 L11 11 L1 11 Z\"/></svg> completed with errors</span>",
                );
            }
            html.push_str("</p>");
        }
        html.push_str(&self.table.to_html());
        html.push_str("</figure>");
        html
    }
}

impl Table {
    fn to_html(&self) -> String {
        let mut html = format!(
            "<details class=\"chart-data\"><summary>{}</summary><div class=\"table-wrap\"><table class=\"files\">\
             <thead><tr>",
            escape(&self.caption)
        );
        for h in &self.headers {
            let _ = write!(html, "<th scope=\"col\">{}</th>", escape(h));
        }
        html.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            html.push_str("<tr>");
            for cell in row {
                let _ = write!(html, "<td>{}</td>", escape(cell));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table></div></details>");
        html
    }
}

impl Panel {
    /// The panel as an `<svg>` image: title, description, grid with labelled steps, bars (each
    /// with its own tooltip), marks, and labels under every n-th bar.
    fn to_svg(&self, id: &str) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let baseline = TOP + plot_h;
        let axis = ValueAxis::for_max(self.bars.iter().map(|b| b.value).fold(0.0, f64::max), self.whole);
        let mut svg = format!(
            "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
             aria-labelledby=\"{id}-title {id}-desc\"><title id=\"{id}-title\">{}</title>\
             <desc id=\"{id}-desc\">{}</desc>",
            escape(&self.title),
            escape(&self.description)
        );
        // The value axis: a grid line and a label per step, the unit above it.
        svg.push_str("<g class=\"grid\">");
        for (value, label) in axis.ticks() {
            let y = baseline - value / axis.top * plot_h;
            let _ = write!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                escape(&label)
            );
        }
        let _ = write!(
            svg,
            "</g><text class=\"unit\" x=\"{LEFT}\" y=\"{:.1}\">{}</text>",
            TOP - 8.0,
            escape(&self.unit)
        );
        // The bars, oldest on the left.
        let n = self.bars.len();
        let slot = plot_w / n as f64;
        let width = (slot * 0.7).max(1.0);
        let every = n.div_ceil(X_LABELS).max(1);
        for (i, bar) in self.bars.iter().enumerate() {
            let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
            let h = (bar.value.max(0.0) / axis.top * plot_h).min(plot_h);
            let top = baseline - h;
            let _ = write!(
                svg,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{h:.1}\">\
                 <title>{}</title></rect>",
                bar.mark.class(),
                escape(&bar.tip)
            );
            let cx = x + width / 2.0;
            let my = (top - 7.0).max(TOP - 6.0);
            match bar.mark {
                Mark::Plain => {}
                Mark::Failed => {
                    let _ = write!(
                        svg,
                        "<path class=\"mark-failed\" d=\"M{:.1} {:.1} L{:.1} {:.1} M{:.1} {:.1} L{:.1} {:.1}\"/>",
                        cx - 4.0,
                        my - 4.0,
                        cx + 4.0,
                        my + 4.0,
                        cx + 4.0,
                        my - 4.0,
                        cx - 4.0,
                        my + 4.0
                    );
                }
                Mark::Partial => {
                    let _ = write!(
                        svg,
                        "<path class=\"mark-partial\" d=\"M{cx:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z\"/>",
                        my - 4.5,
                        cx + 4.5,
                        my + 4.0,
                        cx - 4.5,
                        my + 4.0
                    );
                }
            }
            if i % every == 0 {
                let _ = write!(
                    svg,
                    "<text class=\"label\" x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    baseline + 16.0,
                    escape(&bar.label)
                );
            }
        }
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{baseline:.1}\" y2=\"{baseline:.1}\"/></svg>",
            WIDTH - RIGHT
        );
        svg
    }
}

/// A value axis from zero to a round top, in round steps (1, 2 or 5 times a power of ten; at
/// least 1 for counts).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ValueAxis {
    step: f64,
    top: f64,
}

impl ValueAxis {
    fn for_max(max: f64, whole: bool) -> Self {
        if !max.is_finite() || max <= 0.0 {
            return Self { step: 1.0, top: 1.0 };
        }
        let raw = if whole {
            (max / TICKS).max(1.0)
        } else {
            max / TICKS
        };
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * magnitude);
        let top = (max / step).ceil() * step;
        Self { step, top }
    }

    /// Each step's value and its label, from zero to the top.
    fn ticks(&self) -> Vec<(f64, String)> {
        // As many decimals as the step needs (0.5 → 1, 0.02 → 2).
        let decimals = (0..6)
            .find(|d| {
                let scaled = self.step * 10f64.powi(*d);
                (scaled - scaled.round()).abs() < 1e-6
            })
            .unwrap_or(6) as usize;
        let steps = (self.top / self.step).round() as usize;
        (0..=steps)
            .map(|i| {
                let v = self.step * i as f64;
                (v, format!("{v:.decimals$}"))
            })
            .collect()
    }
}

/// Text made safe for HTML and SVG text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64, mark: Mark) -> Bar {
        Bar {
            label: label.into(),
            value,
            tip: format!("{label}: {value}"),
            mark,
        }
    }

    fn figure(bars: Vec<Bar>) -> Figure {
        Figure {
            id: "runs".into(),
            panels: vec![Panel {
                title: "Files changed per run".into(),
                unit: "files".into(),
                description: "Three runs.".into(),
                whole: true,
                bars,
            }],
            table: Table {
                caption: "The numbers".into(),
                headers: vec!["Started".into(), "Files".into()],
                rows: vec![vec!["10:00".into(), "4".into()]],
            },
            empty: "No run yet.".into(),
        }
    }

    /// The `height` of every bar, in order.
    fn heights(svg: &str) -> Vec<f64> {
        svg.split("<rect ")
            .skip(1)
            .map(|r| {
                let at = r.find("height=\"").unwrap() + 8;
                r[at..at + r[at..].find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn the_value_axis_rounds_up_to_a_step_of_one_two_or_five() {
        let axis = |max| {
            let a = ValueAxis::for_max(max, false);
            (a.step, a.top)
        };
        assert_eq!(axis(0.0), (1.0, 1.0));
        assert_eq!(axis(-3.0), (1.0, 1.0));
        assert_eq!(axis(f64::NAN), (1.0, 1.0));
        assert_eq!(axis(1.0), (0.5, 1.0));
        assert_eq!(axis(4.0), (1.0, 4.0));
        assert_eq!(axis(7.0), (2.0, 8.0));
        assert_eq!(axis(42.0), (20.0, 60.0));
        assert_eq!(axis(100.0), (50.0, 100.0));
        assert_eq!(axis(1234.0), (500.0, 1500.0));
        let labels = |max, whole| -> Vec<String> {
            ValueAxis::for_max(max, whole)
                .ticks()
                .into_iter()
                .map(|t| t.1)
                .collect()
        };
        assert_eq!(labels(1.0, false), ["0.0", "0.5", "1.0"]);
        assert_eq!(labels(0.3, false), ["0.0", "0.1", "0.2", "0.3"]);
        assert_eq!(labels(42.0, false), ["0", "20", "40", "60"]);
        // Counts step by whole numbers.
        assert_eq!(labels(1.0, true), ["0", "1"]);
        assert_eq!(labels(3.0, true), ["0", "1", "2", "3"]);
    }

    #[test]
    fn bars_are_scaled_to_the_axis_top_and_never_below_zero() {
        let plot_h = HEIGHT - TOP - BOTTOM;
        let html = figure(vec![
            bar("a", 30.0, Mark::Plain),
            bar("b", 60.0, Mark::Plain),
            bar("c", 0.0, Mark::Plain),
            bar("d", -5.0, Mark::Plain),
        ])
        .to_html();
        // The axis for 60 goes to 60 in steps of 20.
        let h = heights(&html);
        assert_eq!(h.len(), 4);
        assert!((h[1] - plot_h).abs() < 0.1, "{h:?}");
        assert!((h[0] - plot_h / 2.0).abs() < 0.1, "{h:?}");
        assert_eq!(&h[2..], [0.0, 0.0]);
        for label in [">0<", ">20<", ">40<", ">60<"] {
            assert!(html.contains(label), "{label}: {html}");
        }
    }

    #[test]
    fn labels_titles_and_table_cells_are_escaped() {
        let mut f = figure(vec![Bar {
            label: "<script>x</script>".into(),
            value: 1.0,
            tip: "a \"quoted\" & <b>tip</b>".into(),
            mark: Mark::Plain,
        }]);
        f.panels[0].title = "Runs of <img src=x>".into();
        f.panels[0].description = "It's <desc>".into();
        f.table.rows = vec![vec!["<td>".into(), "x'y".into()]];
        f.id = "a\"b".into();
        let html = f.to_html();
        for raw in ["<script>", "<b>tip", "<img", "<desc>", "<td><td>", "a\"b"] {
            assert!(!html.contains(raw), "{raw} in {html}");
        }
        for escaped in [
            "&lt;script&gt;x&lt;/script&gt;",
            "a &quot;quoted&quot; &amp; &lt;b&gt;tip&lt;/b&gt;",
            "Runs of &lt;img src=x&gt;",
            "It&#39;s &lt;desc&gt;",
            "<td>&lt;td&gt;</td><td>x&#39;y</td>",
        ] {
            assert!(html.contains(escaped), "{escaped} not in {html}");
        }
    }

    #[test]
    fn no_bars_say_so_instead_of_drawing_an_empty_chart() {
        let html = figure(vec![]).to_html();
        assert_eq!(html, "<p class=\"empty\">No run yet.</p>");
    }

    #[test]
    fn a_single_bar_fills_the_axis_and_is_labelled() {
        let html = figure(vec![bar("10:00", 3.0, Mark::Plain)]).to_html();
        let plot_h = HEIGHT - TOP - BOTTOM;
        assert_eq!(heights(&html).len(), 1);
        assert!((heights(&html)[0] - plot_h).abs() < 0.1, "{html}");
        assert!(html.contains(">10:00</text>"), "{html}");
        assert!(!html.contains("chart-legend"), "no marks, no legend: {html}");
        // A single zero value still has an axis (0 to 1), not a division by zero.
        let html = figure(vec![bar("10:00", 0.0, Mark::Plain)]).to_html();
        assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
    }

    #[test]
    fn failures_have_a_shape_and_a_class_of_their_own_and_a_legend() {
        let html = figure(vec![
            bar("a", 3.0, Mark::Plain),
            bar("b", 0.0, Mark::Failed),
            bar("c", 2.0, Mark::Partial),
        ])
        .to_html();
        assert_eq!(html.matches("class=\"bar failed\"").count(), 1, "{html}");
        assert_eq!(html.matches("class=\"bar partial\"").count(), 1, "{html}");
        // One cross and one triangle on the bars, one of each in the legend.
        assert_eq!(html.matches("class=\"mark-failed\"").count(), 2, "{html}");
        assert_eq!(html.matches("class=\"mark-partial\"").count(), 2, "{html}");
        assert!(html.contains("> failed</span>"), "{html}");
        assert!(html.contains("> completed with errors</span>"), "{html}");
    }

    #[test]
    fn the_chart_is_an_image_named_by_its_title_and_description() {
        let html = figure(vec![bar("a", 1.0, Mark::Plain)]).to_html();
        assert!(html.contains("role=\"img\""), "{html}");
        assert!(
            html.contains("aria-labelledby=\"runs-0-title runs-0-desc\""),
            "{html}"
        );
        assert!(html.contains("<title id=\"runs-0-title\">Files changed per run</title>"));
        assert!(html.contains("<p class=\"chart-title\" aria-hidden=\"true\">Files changed per run</p><svg"));
        assert!(html.contains("<desc id=\"runs-0-desc\">Three runs.</desc>"));
        assert!(html.contains("<details class=\"chart-data\"><summary>The numbers</summary>"));
        assert!(html.contains("<th scope=\"col\">Started</th>"));
    }

    #[test]
    fn only_every_nth_bar_is_labelled_when_there_are_many() {
        let bars = (0..24).map(|i| bar(&format!("h{i}"), 1.0, Mark::Plain)).collect();
        let html = figure(bars).to_html();
        assert_eq!(html.matches("class=\"label\"").count(), X_LABELS, "{html}");
        assert!(html.contains(">h0</text>") && html.contains(">h20</text>"));
        assert!(!html.contains(">h1</text>"));
    }
}
