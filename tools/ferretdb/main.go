// Command ferretdb runs FerretDB v1 (the embeddable package) with its SQLite
// backend: the MongoDB-compatible server for Hato's dev mode and tests.
//
// FerretDB's own cmd/ferretdb built with `go install` panics at start-up
// because its version file is produced by FerretDB's release tooling; the
// embeddable package has no such check, so this wrapper uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on -pprof-addr, for measuring the store's cost
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite URI (a directory, ending in /)")
	level := flag.String("log-level", "warn", "debug, info, warn or error")
	pprofAddr := flag.String("pprof-addr", "", "serve Go's /debug/pprof on this address (off when empty)")
	debugAddr := flag.String("debug-addr", "", "serve Prometheus metrics (process and Go runtime) "+
		"on this address at /debug/metrics, as FerretDB's own --debug-addr does (off when empty)")
	flag.Parse()

	// The server's heap is small (tens of MB) and short-lived garbage dominates, so the
	// collector ran often: under Hato's write load it took about a tenth of the CPU. Let
	// the heap grow four times between collections instead of twice, unless GOGC is set.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	// One processor for Go code, unless GOMAXPROCS is set. SQLite's writers take turns
	// (writers-take-turns.patch), so a second one buys the server little, and Go's scheduler
	// hands goroutines between the two (strace under Hato's load: 8.9 futex and 32 nanosleep
	// calls a commit with two, 6.6 and 27 with one). On the 2-core bench host (bench.compare,
	// 3,000-4,000 x 1 KB), the server's CPU a mail against ingest's fell from 0.55-0.58 to
	// 0.51-0.56 (about 0.1 ms a mail); the whole relay's cost moved within the host's noise.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}

	if *debugAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/debug/metrics", promhttp.Handler())
		go func() { _ = http.ListenAndServe(*debugAddr, mux) }()
	}

	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }()
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	logger.Info("listening", "addr", *listen, "uri", f.MongoDBURI())
	if err := f.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
