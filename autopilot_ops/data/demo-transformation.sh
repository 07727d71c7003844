#!/bin/sh
# The quick start's demo payload: sums the squares of 1..N and writes the result to the job's output file.
# Usage: demo-transformation.sh --n N --output FILE
set -eu
n=1000
output=demo.out
while [ $# -gt 0 ]; do
    case "$1" in
        --n) n="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        *) echo "demo-transformation: unknown argument $1" >&2; exit 2 ;;
    esac
done
echo "demo-transformation: summing the squares of 1..$n on $(hostname)"
sum=$(awk -v n="$n" 'BEGIN { s = 0; for (i = 1; i <= n; i++) s += i * i; printf "%d", s }')
sleep 2
echo "n=$n sum_of_squares=$sum" > "$output"
echo "demo-transformation: wrote $output"
