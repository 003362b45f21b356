// Command deployme is the command-line client of a deployme coordinator: it creates, watches,
// scales and deletes Kubernetes clusters and manages infras, hosts, API tokens and coordinator
// replicas, all through the REST API (api/client). See DESIGN.md section 4.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run executes one command line and returns the exit code (see exitOK, exitError, exitUsage).
// Everything the process reads from its surroundings comes in as arguments, so tests run
// the CLI in-process.
func run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	// An interrupt cancels the command's context, so a watch stops polling and leaves the
	// terminal tidy instead of dying mid-redraw.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newApp(stdout, stderr, env).run(ctx, args)
}
