// Command clickedge is the click-tracking edge node of an affiliate network
// and the tools to operate it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
}

// command is a subcommand. run gets the arguments after its name and
// returns the exit code: 0 success, 1 failure, 2 bad usage.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer, env []string) int
	// flags returns the command's flag set for `clickedge help NAME`; nil
	// if it takes none.
	flags func(env []string) *flag.FlagSet
}

// commands is filled in init: usage, which lists them, is reachable from
// their run functions.
var commands []command

func init() {
	commands = []command{
		{name: "serve", summary: "run an edge node", run: cmdServe,
			flags: func(env []string) *flag.FlagSet { fs, _ := serveFlags(env); return fs }},
		{name: "outbox", summary: "inspect, export, replay, verify, compact or salvage an outbox", run: cmdOutbox,
			flags: func(env []string) *flag.FlagSet { return outboxFlags() }},
		{name: "collect", summary: "consume clicks and actions from the central broker into PostgreSQL", run: cmdCollect,
			flags: func(env []string) *flag.FlagSet { fs, _ := collectFlags(env); return fs }},
		{name: "healthcheck", summary: "exit 0 if a node's /readyz answers 200 (container health checks)", run: cmdHealthcheck},
		{name: "cluster", summary: "list a region's members, rotate its gossip keys (through a node's admin API)", run: cmdCluster,
			flags: func(env []string) *flag.FlagSet { fs, _, _ := clusterFlags(env); return fs }},
		{name: "drain", summary: "stop a node, handing what it could not deliver to a peer of its region", run: cmdDrain,
			flags: func(env []string) *flag.FlagSet { fs, _ := drainFlags(env); return fs }},
		{name: "links", summary: "validate, trace, push or export links", run: cmdLinks},
		{name: "postback", summary: "sign a postback URL for an advertiser (postback sign)", run: cmdPostback,
			flags: func(env []string) *flag.FlagSet { fs, _, _, _, _ := postbackSignFlags(env); return fs }},
		{name: "version", summary: "print the version and build information", run: cmdVersion},
		{name: "help", summary: "show this help, or a command's flags: help COMMAND", run: cmdHelp},
	}
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// run is the whole program minus the process: tests call it in-process.
// env holds "KEY=value" strings, as os.Environ returns them.
func run(args []string, stdout, stderr io.Writer, env []string) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	cmd := findCommand(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "clickedge: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(args[1:], stdout, stderr, env)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: clickedge <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'clickedge help <command>' for a command's flags.\n")
}

func cmdHelp(args []string, stdout, stderr io.Writer, env []string) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return 0
	case 1:
		cmd := findCommand(args[0])
		if cmd == nil {
			fmt.Fprintf(stderr, "clickedge help: unknown command %q\n\n", args[0])
			usage(stderr)
			return 2
		}
		if cmd.flags == nil {
			fmt.Fprintf(stdout, "usage: clickedge %s\n\n%s.\n", cmd.name, upperFirst(cmd.summary))
			return 0
		}
		fs := cmd.flags(env)
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	fmt.Fprintln(stderr, "usage: clickedge help [command]")
	return 2
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func cmdVersion(args []string, stdout, stderr io.Writer, env []string) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: clickedge version")
		return 2
	}
	fmt.Fprintln(stdout, versionString())
	return 0
}

// serveOptions are serve's flags.
type serveOptions struct {
	config      string // config file; "" = embedded defaults
	printConfig bool
	check       bool // -check: validate the config and its files, bind nothing (check.go)
}

// serveFlags returns serve's flag set, writing into the returned options.
// -config defaults to $CLICKEDGE_CONFIG from env.
func serveFlags(env []string) (*flag.FlagSet, *serveOptions) {
	o := new(serveOptions)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.config, "config", lookupEnv(env, "CLICKEDGE_CONFIG"),
		"configuration `file`; default $CLICKEDGE_CONFIG, else the embedded defaults")
	fs.BoolVar(&o.printConfig, "print-config", false,
		"print the effective configuration (secrets redacted) as YAML and exit")
	fs.BoolVar(&o.check, "check", false,
		"load and validate the configuration and every file it names, bind nothing, exit 0 or 1")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: clickedge serve [-config FILE] [-print-config] [-check]\n\n"+
			"Run an edge node. Every configuration key can be overridden by a\n"+
			"CLICKEDGE_* environment variable (see -print-config for the keys).\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs, o
}

// parseServeArgs parses serve's arguments; errors and -h go to out.
func parseServeArgs(args, env []string, out io.Writer) (*serveOptions, error) {
	fs, o := serveFlags(env)
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintf(out, "clickedge serve: %v\n", err)
		fs.Usage()
		return nil, err
	}
	return o, nil
}

// loadServeConfig parses serve's arguments and loads the configuration
// they name (the flag, else $CLICKEDGE_CONFIG, else the embedded defaults)
// with env's overrides. Errors name the file or variable and the key.
func loadServeConfig(args, env []string) (*Config, error) {
	o, err := parseServeArgs(args, env, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	return LoadConfig(o.config, env)
}

func cmdServe(args []string, stdout, stderr io.Writer, env []string) int {
	o, err := parseServeArgs(args, env, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	cfg, err := LoadConfig(o.config, env)
	if err != nil {
		printError(stderr, "clickedge serve: ", err)
		return 1
	}
	if o.check {
		return checkConfig(cfg, stdout, stderr)
	}
	if o.printConfig {
		b, err := cfg.Redacted().YAML()
		if err != nil {
			printError(stderr, "clickedge serve: print config: ", err)
			return 1
		}
		stdout.Write(b)
		return 0
	}

	rep, err := newReporter(cfg) // sentry.go; nil without sentry.dsn
	if err != nil {
		printError(stderr, "clickedge serve: ", err)
		return 1
	}
	defer rep.close()
	defer func() {
		if v := recover(); v != nil {
			rep.panicked(v)
			panic(v)
		}
	}()
	logger := rep.logger(newLogger(stderr, cfg.Log.SlogLevel()))
	logStartup(logger, cfg)

	// The live heap is small (tens of MB) and each click allocates a
	// little (net/http, bbolt): at the default GOGC=100 the collector ran
	// so often that it took about a fifth of the CPU under load
	// (docs/performance.md). GOGC in the environment still wins.
	if lookupEnv(env, "GOGC") == "" {
		debug.SetGCPercent(400)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return serve(cfg, logger, stderr, sigs, nil)
}

// logStartup logs what is starting, and at debug level the whole
// effective configuration, redacted.
func logStartup(logger *slog.Logger, cfg *Config) {
	source := cfg.Path()
	if source == "" {
		source = "(embedded defaults)"
	}
	logger.Info("clickedge starting", "version", versionString(), "config", source,
		"node", cfg.Node.ID, "region", cfg.Node.Region)
	logger.Debug("effective configuration", "config", cfg) // *Config redacts itself
}

// newLogger returns the process logger: JSON lines on w. level may be a
// *slog.LevelVar so that a reload can change it.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: msTimeAttr}))
}

// msTimeAttr writes times in timeFormat (UTC, milliseconds), as clicks and
// the tools do, instead of slog's local time to the nanosecond.
func msTimeAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindTime {
		a.Value = slog.StringValue(a.Value.Time().UTC().Format(timeFormat))
	}
	return a
}

// printError writes err with prefix on each of its lines, so that every
// problem of a joined error reads on its own.
func printError(w io.Writer, prefix string, err error) {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(w, "%s%s\n", prefix, line)
	}
}

// lookupEnv returns the last value of name in env, as os.Getenv would.
func lookupEnv(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}
