package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the release, set at build time:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/clickedge
var version = "dev"

// versionString is the line `clickedge version` prints, e.g.
// "clickedge v1.2.0 (3f2a9c1e0b7d, go1.26.8, linux/amd64)".
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(version, bi, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
}

// formatVersion builds the version line from what the build recorded; bi
// may be nil (a binary built without module support).
func formatVersion(v string, bi *debug.BuildInfo, goVersion, platform string) string {
	var rev string
	var dirty bool
	if bi != nil {
		// `go install module@v1.2.0` records the version; use it when the
		// linker did not set one.
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	parts := make([]string, 0, 3)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		parts = append(parts, rev)
	}
	parts = append(parts, goVersion, platform)
	return fmt.Sprintf("clickedge %s (%s)", v, strings.Join(parts, ", "))
}
