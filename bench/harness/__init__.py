"""The shared bench harness: processes and CPU accounting (proc), fresh databases (db), `tillit serve` and
`tillit sandbox` (server), load generators (load), figures and output (report), common arguments (cli).

The bench scripts are run as files (`python bench/checkout.py`), so each puts the checkout's root on
sys.path and imports ``bench.harness``; nothing here is installed with the package.
"""
