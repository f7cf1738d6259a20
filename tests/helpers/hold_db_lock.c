/* Holds a write lock on a SQLite database, as another program in the middle of a long write
 * would: usage  hold_db_lock DB SECONDS. Prints "locked" once the lock is held, then keeps it
 * for SECONDS (or until killed). A helper of test_odd_files_cli. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: hold_db_lock DB SECONDS\n");
        return 2;
    }
    sqlite3 *db = NULL;
    char *msg = NULL;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "hold_db_lock: %s: %s\n", argv[1], msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        return 1;
    }
    printf("locked\n");
    fflush(stdout);
    sleep((unsigned)atoi(argv[2]));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    return 0;
}
