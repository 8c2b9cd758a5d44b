package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/catalog/catalogtest"
)

// linkCode and writeCatalog are the generated catalog's, shared with the
// catalog's own benchmarks.
var (
	linkCode     = catalogtest.LinkCode
	writeCatalog = catalogtest.Write
)

// LinkCacheRun is one load of a generated catalog, measured in a fresh
// child process.
type LinkCacheRun struct {
	Links     int     `json:"links"`
	Format    string  `json:"format"` // of the file: json or yaml (writeCatalog)
	Rep       int     `json:"rep"`
	FileBytes int64   `json:"file_bytes"`
	LoadS     float64 `json:"load_s"` // catalog.Load: read, parse, compile, index
	// HeapInuse is the heap the catalog holds: runtime.MemStats.HeapInuse
	// (bytes in spans with a live object) after two GCs, minus the same
	// before the load. HeapLive is HeapAlloc the same way: the live
	// objects alone. The difference is fragmentation: spans kept for a few
	// survivors among the parse's garbage (Go's GC does not move objects).
	HeapInuse int64 `json:"heap_inuse_bytes"`
	HeapLive  int64 `json:"heap_live_bytes"`
	// RSS is the process's resident size after the load, two GCs and
	// debug.FreeOSMemory; PeakRSS is its high-water mark (during the parse).
	RSS     int64 `json:"rss_bytes"`
	PeakRSS int64 `json:"peak_rss_bytes"`
	// Lookup costs in ns/op: the same code again and again (cache-hot),
	// codes in random order over the whole catalog (the realistic case for
	// a big catalog: cache misses), and unknown codes.
	LookupHotNs    float64 `json:"lookup_hot_ns"`
	LookupRandomNs float64 `json:"lookup_random_ns"`
	LookupMissNs   float64 `json:"lookup_miss_ns"`
	GOMAXPROCS     int     `json:"gomaxprocs"`
	Error          string  `json:"error,omitempty"`
}

// cmdLinkCache is the child: it loads one catalog file and prints a
// LinkCacheRun as JSON.
func cmdLinkCache(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("linkcache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "catalog `file` made by writeCatalog")
	n := fs.Int("n", 0, "number of links in the file")
	cpuProf := fs.String("cpuprofile", "", "write a CPU profile of the load to `file`")
	memProf := fs.String("memprofile", "", "write a heap profile after the load to `file`")
	if err := fs.Parse(args); err != nil || *file == "" || *n <= 0 {
		fmt.Fprintln(stderr, "usage: bench linkcache -file FILE -n LINKS")
		return 2
	}
	r := LinkCacheRun{Links: *n, Format: strings.TrimPrefix(filepath.Ext(*file), "."), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if fi, err := os.Stat(*file); err == nil {
		r.FileBytes = fi.Size()
	}
	heap := func() (inuse, live int64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse), int64(ms.HeapAlloc)
	}
	inuse0, live0 := heap()
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench linkcache:", err)
			return 1
		}
		defer f.Close()
	}
	start := time.Now()
	cat, err := catalog.Load(*file)
	r.LoadS = time.Since(start).Seconds()
	if *cpuProf != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench linkcache:", err)
		return 1
	}
	inuse, live := heap()
	r.HeapInuse, r.HeapLive = inuse-inuse0, live-live0
	if *memProf != "" {
		f, err := os.Create(*memProf)
		if err == nil {
			err = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench linkcache:", err)
			return 1
		}
	}
	debug.FreeOSMemory()
	r.RSS, r.PeakRSS = rss(0)
	if cat.Len() != *n {
		fmt.Fprintf(stderr, "bench linkcache: %d links, want %d\n", cat.Len(), *n)
		return 1
	}

	// Keys as a request would bring them: fresh strings, contiguous in
	// memory, in random order over the catalog.
	const samples = 1 << 20
	rnd := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, samples)
	var buf bytes.Buffer
	offs := make([]int, samples+1)
	for i := range keys {
		buf.WriteString(linkCode(rnd.IntN(*n)))
		offs[i+1] = buf.Len()
	}
	all := buf.String()
	for i := range keys {
		keys[i] = all[offs[i]:offs[i+1]]
	}
	miss := make([]string, 1024)
	for i := range miss {
		miss[i] = "zz" + linkCode(i)
	}
	var found int
	timeLoop := func(ops int, f func(i int)) float64 {
		start := time.Now()
		for i := range ops {
			f(i)
		}
		return float64(time.Since(start).Nanoseconds()) / float64(ops)
	}
	hot := strings.Clone(keys[0])
	r.LookupHotNs = timeLoop(10_000_000, func(int) {
		if cat.Lookup(hot) != nil {
			found++
		}
	})
	r.LookupRandomNs = timeLoop(4*samples, func(i int) {
		if cat.Lookup(keys[i&(samples-1)]) != nil {
			found++
		}
	})
	r.LookupMissNs = timeLoop(4_000_000, func(i int) {
		if cat.Lookup(miss[i&1023]) != nil {
			found--
		}
	})
	if found != 10_000_000+4*samples {
		fmt.Fprintf(stderr, "bench linkcache: %d lookups found a link, want %d\n", found, 10_000_000+4*samples)
		return 1
	}
	runtime.KeepAlive(cat)
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// measureLinkCache generates a catalog of n links (once) and measures it in
// a child process, which is killed if its RSS passes limit.
func (b *bencher) measureLinkCache(n int, format string, rep int, limit int64, profArgs ...string) LinkCacheRun {
	r := LinkCacheRun{Links: n, Format: format, Rep: rep}
	path := linkCachePath(b.tmp, n, format)
	if _, err := os.Stat(path); err != nil {
		f, err := os.Create(path)
		if err == nil {
			err = writeCatalog(f, n, format)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			r.Error = "write catalog: " + err.Error()
			return r
		}
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(b.self, append([]string{"linkcache", "-file", path, "-n", strconv.Itoa(n)}, profArgs...)...)
	cmd.Env = childEnv(nil)
	if b.plan.ServerCPUs != "" {
		// Undo the load generator's pinning: the catalog loads on every CPU,
		// as it would in a running edge.
		cmd = exec.Command("taskset", append([]string{"-c", "0-" + strconv.Itoa(numCPU()-1)}, cmd.Args...)...)
		cmd.Env = childEnv(nil)
	}
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		r.Error = err.Error()
		return r
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var peak int64
	for {
		select {
		case err := <-done:
			if err != nil {
				r.Error = fmt.Sprintf("%v: %s", err, strings.TrimSpace(errb.String()))
				if peak > limit {
					r.Error = fmt.Sprintf("stopped: RSS passed the %.1f GiB guard (%.1f GiB)", gib(limit), gib(peak))
				}
				r.PeakRSS = peak
				return r
			}
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				r.Error = "child output: " + err.Error()
			}
			r.Rep = rep
			return r
		case <-tick.C:
			cur, _ := rss(cmd.Process.Pid)
			peak = max(peak, cur)
			if cur > limit {
				cmd.Process.Kill()
			}
		}
	}
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
func mib(b int64) float64 { return float64(b) / (1 << 20) }

// memAvailable is MemAvailable from /proc/meminfo.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// linkCachePath is where the generated catalog of n links in format is
// written.
func linkCachePath(dir string, n int, format string) string {
	return fmt.Sprintf("%s/links-%d.%s", dir, n, format)
}

// cmdGenCatalog writes a generated catalog to stdout, to try a big catalog
// with a real edge.
func cmdGenCatalog(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gencatalog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1_000_000, "number of links")
	format := fs.String("format", "yaml", "`format` of the catalog: yaml or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := writeCatalog(stdout, *n, *format); err != nil {
		fmt.Fprintln(stderr, "bench gencatalog:", err)
		return 1
	}
	return 0
}
