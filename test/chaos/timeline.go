package chaos

import (
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

// Lane colors, one per displayed role.
var laneColors = []struct{ name, color string }{
	{"leader", "#1b8a3a"},
	{"leader, lease lapsed", "#9fd8a8"},
	{"follower", "#8fb8e0"},
	{"candidate", "#f08c00"},
	{"down", "#5a5a5a"},
	{"unreachable", "#b48ad6"},
	{"no data", "#ffffff"},
}

func laneColor(name string) string {
	for _, c := range laneColors {
		if c.name == name {
			return c.color
		}
	}
	return "#ffffff"
}

// displayRole maps a status observation to its lane color name.
func displayRole(e Event) string {
	switch e.Role {
	case RoleLeader:
		if e.IsSelf {
			return "leader"
		}
		return "leader, lease lapsed"
	case RoleFollower:
		return "follower"
	case RoleCandidate:
		return "candidate"
	case RoleDown, RoleShutdown:
		return "down"
	case RoleUnreachable:
		return "unreachable"
	}
	return "no data"
}

type segment struct {
	from, to time.Duration
	role     string
}

// laneSegments returns node's role segments from status polls within [from, to].
func laneSegments(s Snapshot, node string, from, to time.Duration) []segment {
	evs := s.NodeEvents(node, SourceStatus)
	var out []segment
	for i, e := range evs {
		end := e.Until
		if i+1 < len(evs) {
			end = evs[i+1].At
		}
		a, b := max(e.At, from), min(end, to)
		if b <= a {
			continue
		}
		out = append(out, segment{a, b, displayRole(e)})
	}
	return out
}

const (
	svgLaneH   = 14
	svgLaneGap = 3
	svgLabelW  = 34
	svgPanelW  = 620
	svgFullW   = 1280
)

type svgWriter struct{ b strings.Builder }

func (w *svgWriter) f(format string, a ...any) { fmt.Fprintf(&w.b, format, a...) }

// panel draws lanes for every node over [from, to] at (x, y), width w, with
// fault windows shaded; origin is where t=0 is labelled on the axis.
func (w *svgWriter) panel(s Snapshot, x, y, width int, from, to, origin time.Duration, title string, faults []int, marks []mark) int {
	px := func(t time.Duration) float64 {
		return float64(x+svgLabelW) + float64(t-from)/float64(to-from)*float64(width-svgLabelW)
	}
	w.f(`<text x="%d" y="%d" class="title">%s</text>`+"\n", x, y+11, html.EscapeString(title))
	top := y + 30 // title, then a row for the fault bar and the marks
	lanesH := len(s.Nodes)*(svgLaneH+svgLaneGap) - svgLaneGap
	for i, node := range s.Nodes {
		ly := top + i*(svgLaneH+svgLaneGap)
		w.f(`<text x="%d" y="%d" class="lane">%s</text>`+"\n", x, ly+svgLaneH-3, node)
		w.f(`<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#ddd"/>`+"\n", x+svgLabelW, ly, width-svgLabelW, svgLaneH)
		for _, sg := range laneSegments(s, node, from, to) {
			w.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s %s-%s</title></rect>`+"\n",
				px(sg.from), ly, max(px(sg.to)-px(sg.from), 0.5), svgLaneH, laneColor(sg.role), node, sg.role, fmtDur(sg.from), fmtDur(sg.to))
		}
	}
	for k, i := range faults {
		f := s.Faults[i]
		a, b := max(f.Start, from), min(f.End, to)
		if b <= a {
			b = a + (to-from)/200
		}
		tip := fmt.Sprintf("<title>%s on %s</title>", html.EscapeString(f.Label()), strings.Join(f.Nodes, ","))
		// a light veil over the lanes, a solid bar above them, a label below
		w.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e03131" fill-opacity="0.07" stroke="#e03131" stroke-opacity="0.5" stroke-dasharray="4,2">%s</rect>`+"\n",
			px(a), top-1, px(b)-px(a), lanesH+2, tip)
		w.f(`<rect x="%.1f" y="%d" width="%.1f" height="5" fill="#e03131">%s</rect>`+"\n", px(a), top-8, px(b)-px(a), tip)
		label := fmt.Sprintf("%s→%s", f.Kind, strings.Join(f.Nodes, ","))
		row := 0
		switch {
		case len(faults) > 24 && f.Kind == KindQuiet:
			label = fmt.Sprintf("run %d", f.Run) // too many to number: mark each run's start
		case len(faults) > 24:
			label = ""
		case len(faults) > 1:
			label = fmt.Sprintf("#%d", i)
			row = k % 2
		}
		if label != "" {
			w.f(`<text x="%.1f" y="%d" class="fault">%s</text>`+"\n", px(a), top+lanesH+11+row*9, html.EscapeString(label))
		}
	}
	for _, m := range marks {
		if m.at < from || m.at > to {
			continue
		}
		w.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="1.5" stroke-dasharray="3,2"/>`+"\n", px(m.at), top-10, px(m.at), top+lanesH+2)
		w.f(`<text x="%.1f" y="%d" class="mark">%s</text>`+"\n", px(m.at)+3, top-3, html.EscapeString(m.text))
	}
	// axis: ticks every nice step, labelled relative to origin
	axisY := top + lanesH + 30
	step := niceStep(to - from)
	first := origin + ((from-origin)/step)*step
	for t := first; t <= to; t += step {
		if t < from {
			continue
		}
		w.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888"/>`+"\n", px(t), axisY-4, px(t), axisY)
		w.f(`<text x="%.1f" y="%d" class="tick">%s</text>`+"\n", px(t)-8, axisY+9, tickLabel(t-origin, step))
	}
	return axisY + 14 - y
}

type mark struct {
	at   time.Duration
	text string
}

func niceStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute} {
		if span/s <= 12 {
			return s
		}
	}
	return 10 * time.Minute
}

func tickLabel(d, step time.Duration) string {
	if step < time.Second {
		return fmt.Sprintf("%.2gs", d.Seconds())
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}

// WriteTimeline writes timeline.svg: an overview of the whole run on top,
// then one panel per fault window (from a second before it to its settling),
// each with one lane per node colored by role, the fault shaded, and the
// moment every survivor knew the new leader marked.
func WriteTimeline(out io.Writer, s Snapshot) error {
	w := &svgWriter{}
	cols := 2
	panelH := 30 + len(s.Nodes)*(svgLaneH+svgLaneGap) + 46
	overviewH := panelH + 10
	legendH := 24
	rows := (len(s.Faults) + cols - 1) / cols
	height := legendH + overviewH + rows*(panelH+8) + 10
	width := svgFullW + 20
	w.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", width, height, width, height)
	w.f(`<style>.title{font-size:11px;font-weight:bold}.lane{font-size:10px}.tick{font-size:9px;fill:#555}.fault{font-size:9px;fill:#b02020}.mark{font-size:10px;font-weight:bold}.legend{font-size:10px}</style>` + "\n")
	w.f(`<rect width="100%%" height="100%%" fill="#fafafa"/>` + "\n")
	lx := 10
	for _, c := range laneColors {
		w.f(`<rect x="%d" y="6" width="12" height="12" fill="%s" stroke="#999"/><text x="%d" y="16" class="legend">%s</text>`+"\n", lx, c.color, lx+16, c.name)
		lx += 24 + 7*len(c.name)
	}
	w.f(`<rect x="%d" y="6" width="12" height="12" fill="#e03131" fill-opacity="0.25" stroke="#e03131"/><text x="%d" y="16" class="legend">fault window</text>`+"\n", lx, lx+16)
	lx += 110
	w.f(`<text x="%d" y="16" class="legend">- - - every survivor knows the new leader (+time from the fault)</text>`+"\n", lx)

	length := max(s.Length, time.Second)
	all := make([]int, len(s.Faults))
	for i := range all {
		all[i] = i
	}
	y := legendH
	w.panel(s, 10, y, svgFullW, 0, length, 0, fmt.Sprintf("whole run (%s), %s", length.Round(time.Second), s.Began.UTC().Format(time.RFC3339)), all, nil)
	y += overviewH
	for i, f := range s.Faults {
		m := Measure(s, i)
		from := max(f.Start-time.Second, 0)
		to := f.Settled
		if to <= f.End {
			to = f.End + time.Second
		}
		to = min(to+500*time.Millisecond, length)
		if to <= from {
			to = from + time.Second
		}
		var marks []mark
		if m.Elected {
			marks = append(marks, mark{m.Ref + m.NewLeader, "+" + ms(m.NewLeader) + "ms"})
		}
		title := fmt.Sprintf("#%d %s on %s (old leader %s, term %d)", i, f.Label(), strings.Join(f.Nodes, ","), f.OldLeader, f.OldTerm)
		col, row := i%cols, i/cols
		w.panel(s, 10+col*(svgPanelW+40), y+row*(panelH+8), svgPanelW, from, to, f.Start, title, []int{i}, marks)
	}
	w.f("</svg>\n")
	_, err := io.WriteString(out, w.b.String())
	return err
}
