package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Charts are drawn with gonum.org/v1/plot: maintained, pure Go (no cgo,
// no system fonts: it embeds Liberation), PNG and SVG out of the box.

// One colour per scenario, the same in every chart (Okabe-Ito, readable
// with colour blindness).
var scenarioColor = map[string]color.RGBA{
	"bare":             {0, 0, 0, 255},
	"sync-cutoff":      {0, 114, 178, 255},
	"async-cutoff":     {0, 158, 115, 255},
	"sync-broker":      {86, 180, 233, 255},
	"async-broker":     {204, 121, 167, 255},
	"direct":           {213, 94, 0, 255},
	"bare-fasthttp":    {120, 120, 120, 255},
	"sync-cutoff-net":  {0, 60, 100, 255},
	"async-cutoff-net": {0, 90, 60, 255},
	"sync-cutoff-log":  {230, 159, 0, 255},
	"sync-broker-log":  {240, 228, 66, 255},
}

var dashed = []vg.Length{vg.Points(5), vg.Points(3)}

func writeCharts(r *Results, dir string) error {
	charts := []struct {
		file string
		fn   func(*Results) (*plot.Plot, error)
		w, h vg.Length
	}{
		{"latency.png", latencyChart, 9 * vg.Inch, 5.5 * vg.Inch},
		{"throughput.png", throughputChart, 9 * vg.Inch, 5 * vg.Inch},
		{"drain.png", drainChart, 9 * vg.Inch, 5 * vg.Inch},
	}
	for _, c := range charts {
		p, err := c.fn(r)
		if err != nil {
			return fmt.Errorf("chart %s: %w", c.file, err)
		}
		if p == nil {
			continue
		}
		if err := p.Save(c.w, c.h, filepath.Join(dir, c.file)); err != nil {
			return fmt.Errorf("chart %s: %w", c.file, err)
		}
	}
	return nil
}

// yErrXYs is points with asymmetric vertical errors, for YErrorBars.
type yErrXYs struct {
	plotter.XYs
	plotter.YErrors
}

// latencyChart: p50 (dashed) and p99 (solid, with the min–max of the
// repetitions) against the offered rate, one colour per scenario, log y.
func latencyChart(r *Results) (*plot.Plot, error) {
	if len(r.Summary.Latency) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Latency against offered rate (open model, from each request's due time)\np99 solid (bars: min–max of the repetitions), p50 dashed"
	p.X.Label.Text = "offered rate (requests/s)"
	p.X.Tick.Marker = intTicks{}
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), 0.0
	for _, sc := range scenarioOrder {
		var p50, p99 plotter.XYs
		var errs plotter.YErrors
		for _, l := range r.Summary.Latency {
			if l.Scenario != sc || l.Runs == 0 {
				continue
			}
			x := float64(l.Rate)
			p50 = append(p50, plotter.XY{X: x, Y: math.Max(l.P50.Median/1e3, 1e-3)})
			p99 = append(p99, plotter.XY{X: x, Y: math.Max(l.P99.Median/1e3, 1e-3)})
			errs = append(errs, struct{ Low, High float64 }{
				Low: l.P99.Median/1e3 - l.P99.Min/1e3, High: l.P99.Max/1e3 - l.P99.Median/1e3})
			lo = math.Min(lo, math.Max(l.P50.Median/1e3, 1e-3))
			hi = math.Max(hi, l.P99.Max/1e3)
		}
		if len(p99) == 0 {
			continue
		}
		c := scenarioColor[sc]
		l99, s99, err := plotter.NewLinePoints(p99)
		if err != nil {
			return nil, err
		}
		l99.Color, s99.Color = c, c
		l99.Width = vg.Points(1.5)
		s99.Shape = draw.CircleGlyph{}
		l50, s50, err := plotter.NewLinePoints(p50)
		if err != nil {
			return nil, err
		}
		l50.Color, s50.Color = c, c
		l50.Dashes = dashed
		s50.Shape = draw.TriangleGlyph{}
		eb, err := plotter.NewYErrorBars(yErrXYs{p99, errs})
		if err != nil {
			return nil, err
		}
		eb.Color = c
		p.Add(l99, s99, l50, s50, eb)
		p.Legend.Add(shortLabel(sc), l99, s99)
	}
	// The target: p99 ≤ 2 ms at half of bare's capacity.
	if bm := r.bareMax(); bm > 0 {
		t, err := plotter.NewScatter(plotter.XYs{{X: bm / 2, Y: 2}})
		if err != nil {
			return nil, err
		}
		t.Shape = draw.CrossGlyph{}
		t.Radius = vg.Points(6)
		t.Color = color.RGBA{200, 0, 0, 255}
		p.Add(t)
		p.Legend.Add("target: sync p99 ≤ 2 ms at 50% of bare's max", t)
		hi = math.Max(hi, 2)
	}
	// Room above the data for the legend.
	p.X.Min = 0
	p.Y.Min = math.Max(lo/2, 0.005)
	p.Y.Max = hi * 12
	return p, nil
}

// intTicks are gonum's default ticks labelled as whole numbers.
type intTicks struct{}

func (intTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = fmt.Sprintf("%.0f", ts[i].Value)
		}
	}
	return ts
}

// throughputChart: each scenario's closed-model throughput over bare's,
// with the repetitions' range and the targets.
func throughputChart(r *Results) (*plot.Plot, error) {
	if len(r.Summary.Capacity) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Closed-model throughput relative to the bare net/http 302 server"
	p.Y.Label.Text = "× bare (median of paired runs; bars: min–max)"
	var vals plotter.Values
	var names []string
	var xys plotter.XYs
	var errs plotter.YErrors
	var labels []string
	for i, c := range r.Summary.Capacity {
		v, lo, hi := c.Ratio.Median, c.Ratio.Min, c.Ratio.Max
		if c.Scenario == "bare" {
			v, lo, hi = 1, 1, 1
		}
		vals = append(vals, v)
		names = append(names, shortLabel(c.Scenario))
		xys = append(xys, plotter.XY{X: float64(i), Y: v})
		errs = append(errs, struct{ Low, High float64 }{v - lo, hi - v})
		labels = append(labels, fmt.Sprintf("%.2f×\n%.1fk/s", v, c.RPS.Median/1e3))
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return nil, err
	}
	bars.Color = color.RGBA{0, 114, 178, 255}
	bars.LineStyle.Width = 0
	eb, err := plotter.NewYErrorBars(yErrXYs{xys, errs})
	if err != nil {
		return nil, err
	}
	lxy := make(plotter.XYs, len(xys))
	for i := range xys {
		lxy[i] = plotter.XY{X: xys[i].X, Y: xys[i].Y + errs[i].High + 0.02}
	}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: lxy, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].XAlign = draw.XCenter
	}
	p.Add(plotter.NewGrid(), bars, eb, lab)
	for _, t := range []struct {
		y    float64
		text string
		c    color.RGBA
	}{{0.8, "sync target 0.8×", color.RGBA{0, 114, 178, 255}}, {0.9, "async target 0.9×", color.RGBA{0, 158, 115, 255}}} {
		y := t.y
		f := plotter.NewFunction(func(float64) float64 { return y })
		f.Dashes = dashed
		f.Color = t.c
		f.Width = vg.Points(1)
		p.Add(f)
		p.Legend.Add(t.text, f)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(vals))-0.4
	p.Y.Min, p.Y.Max = 0, 1.35
	return p, nil
}

func shortLabel(sc string) string {
	switch sc {
	case "bare":
		return "bare 302"
	case "sync-cutoff":
		return "sync, cut off"
	case "async-cutoff":
		return "async, cut off"
	case "sync-broker":
		return "sync, forwarding"
	case "async-broker":
		return "async, forwarding"
	case "direct":
		return "direct publish"
	case "seed":
		return "seed (aiohttp)"
	case "bare-fasthttp":
		return "bare fasthttp 302"
	case "sync-cutoff-net":
		return "sync, cut off, net/http"
	case "async-cutoff-net":
		return "async, cut off, net/http"
	case "sync-cutoff-log":
		return "sync + log, cut off"
	case "sync-broker-log":
		return "sync + log, forwarding"
	}
	return sc
}

// drainChart: the outbox backlog over time in every drain run, with the
// outage shaded by its boundaries.
func drainChart(r *Results) (*plot.Plot, error) {
	if len(r.Drain) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Outbox backlog: %v outage, then drain, under %d req/s live load", r.Plan.Outage, r.Drain[0].LiveRate)
	p.X.Label.Text = "seconds since the load began"
	p.X.Tick.Marker = intTicks{}
	p.Y.Label.Text = "pending records (thousands)"
	p.Add(plotter.NewGrid())
	var top float64
	for i, d := range r.Drain {
		var xys plotter.XYs
		for _, s := range d.Series {
			if s.Pending >= 0 {
				xys = append(xys, plotter.XY{X: s.T, Y: float64(s.Pending) / 1e3})
				top = math.Max(top, float64(s.Pending)/1e3)
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Width = vg.Points(1.5)
		l.Color = []color.RGBA{{0, 114, 178, 255}, {213, 94, 0, 255}, {0, 158, 115, 255}, {204, 121, 167, 255}}[i%4]
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("rep %d: %.1fk msg/s delivered while draining", d.Rep, d.DeliveryRate/1e3), l)
	}
	start := r.Plan.DrainWarm.Seconds()
	end := start + r.Plan.Outage.Seconds()
	for _, x := range []float64{start, end} {
		v, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top * 1.05}})
		if err != nil {
			return nil, err
		}
		v.Dashes = dashed
		v.Color = color.RGBA{120, 120, 120, 255}
		p.Add(v)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	return p, nil
}
