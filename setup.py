"""AutoPilot: a generic PanDA pilot and pilot scheduler built on Apache Airflow 3."""

import glob

from setuptools import find_packages, setup

setup(
    name="autopilot-ops",
    version="0.1.0",
    description="Generic PanDA pilot and pilot scheduler, as an Apache Airflow 3 provider",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["autopilot_ops", "autopilot_ops.*"]),
    include_package_data=True,
    data_files=[
        ("share/autopilot/sql", ["sql/tables.sql"]),
        ("share/autopilot/sql/migrations", sorted(glob.glob("sql/migrations/*.sql"))),
    ],
    package_data={
        "autopilot_ops": ["sql/*.sql", "data/*", "data/**/*", "pilot/*.sh"],
        "autopilot_ops.airflow.webapp": ["templates/*.html"],
    },
    install_requires=[
        "apache-airflow>=3.3,<3.4",
        "apache-airflow-providers-celery",
        "apache-airflow-providers-edge3",
        "apache-airflow-providers-http",
        "apache-airflow-providers-postgres",
        "htcondor",
        "psycopg2-binary",
        "PyYAML",
        "requests",
        "psutil",
        "uvicorn",
        "httptools",
        "uvloop",
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "hypothesis", "ruff", "selenium"],
        # the rucio data mover's client; the same minor release as the test server (scripts/rucio-local.sh)
        "rucio": ["rucio-clients>=41.5,<42"],
    },
    entry_points={
        "console_scripts": ["autopilot = autopilot_ops.cli.main:main"],
        "apache_airflow_provider": ["provider_info = autopilot_ops:get_provider_info"],
        "autopilot.backends": [
            "local = autopilot_ops.backends.local:LocalBackend",
            "slurm = autopilot_ops.backends.slurm:SlurmBackend",
            "condor = autopilot_ops.backends.condor:CondorBackend",
            "condor-ce = autopilot_ops.backends.condor:CondorCEBackend",
            "arc = autopilot_ops.backends.arc:ArcBackend",
        ],
        "autopilot.datamovers": [
            "file = autopilot_ops.pilot.movers.file:FileMover",
            "http = autopilot_ops.pilot.movers.http:HttpMover",
            "https = autopilot_ops.pilot.movers.http:HttpMover",
            "s3 = autopilot_ops.pilot.movers.s3:S3Mover",
            "rucio = autopilot_ops.pilot.movers.rucio:RucioMover",
        ],
        "autopilot.vo": ["generic = autopilot_ops.pilot.vo.generic:GenericVO"],
    },
)
