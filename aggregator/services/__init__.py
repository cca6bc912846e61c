"""The logic behind the routes: publishing, intake, rounds, status; callable without HTTP."""
