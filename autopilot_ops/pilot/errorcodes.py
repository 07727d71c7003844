"""Pilot error codes and pilot exit codes, numbered as PanDA and its monitors read them.

Error codes follow PanDAWMS/pilot3 ``pilot/common/errorcodes.py`` (class ``ErrorCodes``); exit codes follow
the translation table of PanDAWMS/pilot3 ``pilot/util/auxiliary.py``
(``get_error_code_translation_dictionary``): 79 for a server communication failure, 82 for no jobs, and
128+signal for signals.
"""

from __future__ import annotations

import signal

# --- pilot error codes (pilot/common/errorcodes.py) ---
GENERALERROR = 1008
NOLOCALSPACE = 1098
STAGEINFAILED = 1099
NOSTORAGE = 1133
STAGEOUTFAILED = 1137
PANDAKILL = 1144
GETMD5MISMATCH = 1145
TRFDOWNLOADFAILURE = 1149
MISSINGOUTPUTFILE = 1165
GETADMISMATCH = 1171
PUTADMISMATCH = 1172
LFNTOOLONG = 1190
MKDIR = 1199
KILLSIGNAL = 1200
SIGTERM = 1201
SIGQUIT = 1202
SIGSEGV = 1203
SIGXCPU = 1204
SIGBUS = 1206
SIGUSR1 = 1207
SIGINT = 1208
REACHEDMAXTIME = 1213
FILEEXISTS = 1221
PAYLOADEXCEEDMAXMEM = 1235
UNKNOWNEXCEPTION = 1301
CONVERSIONFAILURE = 1302
PAYLOADEXECUTIONFAILURE = 1305
UNKNOWNCHECKSUMTYPE = 1314
RUCIOSERVICEUNAVAILABLE = 1316
COMMUNICATIONFAILURE = 1318
LOGFILECREATIONFAILURE = 1320
MISSINGINPUTFILE = 1331
TRANSFORMNOTFOUND = 1346
NOSUCHPROCESS = 1353
BADOUTPUTFILENAME = 1371
NOJOBSINPANDA = 1385

MESSAGES = {
    GENERALERROR: "General pilot error, consult batch log",
    NOLOCALSPACE: "Not enough local space",
    STAGEINFAILED: "Failed to stage-in file",
    NOSTORAGE: "Fetching default storage failed: no activity related storage defined",
    STAGEOUTFAILED: "Failed to stage-out file",
    PANDAKILL: "This job was killed by panda server",
    GETMD5MISMATCH: "md5sum mismatch on input file",
    TRFDOWNLOADFAILURE: "Transform could not be downloaded",
    MISSINGOUTPUTFILE: "Local output file is missing",
    GETADMISMATCH: "adler32 mismatch on input file",
    PUTADMISMATCH: "adler32 mismatch on output file",
    LFNTOOLONG: "LFN too long (exceeding limit of 255 characters)",
    MKDIR: "Failed to create directory",
    KILLSIGNAL: "Job terminated by unknown kill signal",
    SIGTERM: "Job killed by signal: SIGTERM",
    SIGQUIT: "Job killed by signal: SIGQUIT",
    SIGSEGV: "Job killed by signal: SIGSEGV",
    SIGXCPU: "Job killed by signal: SIGXCPU",
    SIGBUS: "Job killed by signal: SIGBUS",
    SIGUSR1: "Job killed by signal: SIGUSR1",
    SIGINT: "Job killed by signal: SIGINT",
    REACHEDMAXTIME: "Reached batch system time limit",
    FILEEXISTS: "File already exists",
    PAYLOADEXCEEDMAXMEM: "Payload exceeded maximum allowed memory",
    UNKNOWNEXCEPTION: "An unknown pilot exception has occurred",
    CONVERSIONFAILURE: "Failed to convert object data",
    PAYLOADEXECUTIONFAILURE: "Failed to execute payload",
    UNKNOWNCHECKSUMTYPE: "Unknown checksum type",
    RUCIOSERVICEUNAVAILABLE: "Rucio: Service unavailable",
    COMMUNICATIONFAILURE: "Failed to communicate with server",
    LOGFILECREATIONFAILURE: "Failed during creation of log file",
    MISSINGINPUTFILE: "Input file is missing in storage element",
    TRANSFORMNOTFOUND: "Transform not found",
    NOSUCHPROCESS: "CPU consumption calculation failed: No such process",
    BADOUTPUTFILENAME: "Output file name contains illegal characters",
    NOJOBSINPANDA: "No jobs in PanDA",
}

#: Pilot error code of each signal the pilot handles (``convert_signal_to_exit_code`` in auxiliary.py).
SIGNAL_ERRORS = {
    signal.SIGTERM: SIGTERM,
    signal.SIGQUIT: SIGQUIT,
    signal.SIGSEGV: SIGSEGV,
    signal.SIGXCPU: SIGXCPU,
    signal.SIGBUS: SIGBUS,
    signal.SIGUSR1: SIGUSR1,
    signal.SIGINT: SIGINT,
}

# --- pilot exit codes (pilot/util/auxiliary.py, get_error_code_translation_dictionary) ---
EXIT_OK = 0
EXIT_GENERAL = 65
EXIT_MKDIR = 66
EXIT_NOLOCALSPACE = 69
EXIT_UNKNOWNEXCEPTION = 70
EXIT_COMMUNICATIONFAILURE = 79
EXIT_NOJOBS = 82

_EXIT_OF_ERROR = {
    GENERALERROR: EXIT_GENERAL,
    MKDIR: EXIT_MKDIR,
    NOLOCALSPACE: EXIT_NOLOCALSPACE,
    UNKNOWNEXCEPTION: EXIT_UNKNOWNEXCEPTION,
    COMMUNICATIONFAILURE: EXIT_COMMUNICATIONFAILURE,
    NOJOBSINPANDA: EXIT_NOJOBS,
}


class JobFailure(Exception):
    """A step of a job failed; carries the pilot error code and the diag to report."""

    def __init__(self, code: int, diag: str) -> None:
        self.code = code
        self.diag = diag
        super().__init__(diag)


def signal_error_code(signum: int) -> int:
    """The pilot error code for a job stopped by signal ``signum``."""
    return SIGNAL_ERRORS.get(signum, KILLSIGNAL)


def signal_exit_code(signum: int) -> int:
    """The pilot's exit code after signal ``signum``: 128+signal, as pilot3's table gives for each signal."""
    return 128 + int(signum)


def exit_code_for_error(error_code: int) -> int:
    """The shell exit code for a pilot-level error code (``shell_exit_code`` in auxiliary.py); 1 if untranslated."""
    if error_code == 0:
        return EXIT_OK
    return _EXIT_OF_ERROR.get(error_code, 1)


def message(error_code: int) -> str:
    """Pilot3's one-line meaning of ``error_code``."""
    return MESSAGES.get(error_code, f"pilot error {error_code}")
