"""Running tabpipe's jobs on a scheduler: ``spec`` describes the three DAGs as plain data (no scheduler
imports); ``airflow`` turns those descriptions into Airflow DAGs. Nothing in tabpipe imports this package."""
