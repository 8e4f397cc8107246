# Varnish peer for bench/run.sh. @ORIGIN_PORT@ is filled by run.sh.
# Everything else is Varnish's built-in VCL: it honours the origin's
# Cache-Control, collapses concurrent misses and streams bodies.
# Started with -s malloc,256m (same memory cache as the others) and two
# thread pools (one per core); no varnishlog/varnishncsa runs, so nothing
# reads or writes a log file (Varnish still writes its in-memory log).
vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "@ORIGIN_PORT@";
}
