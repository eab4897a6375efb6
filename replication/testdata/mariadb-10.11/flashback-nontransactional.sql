/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
/*!40019 SET @@session.max_delayed_threads=0*/;
/*!50003 SET @OLD_COMPLETION_TYPE=@@COMPLETION_TYPE,COMPLETION_TYPE=0*/;
DELIMITER /*!*/;
#261207  6:40:57 server id 3  end_log_pos 256 CRC32 0x57d0948c 	Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 261207  6:40:57
# Warning: this binlog is either in use or was not closed properly.
BINLOG '
+VQWaw8DAAAA/AAAAAABAAABAAQAMTAuMTEuMTktTWFyaWFEQi0wK2RlYjEydTEtbG9nAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAEzgNAAgAEgAEBAQEEgAA5AAEGggAAAAICAgCAAAACgoKAAAAAAAA
CgoKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAEEwQADQgICAoKCgGMlNBX
'/*!*/;
#261207  6:40:57 server id 3  end_log_pos 299 CRC32 0x5be9d482 	Gtid list [0-3-4]
#261207  6:40:57 server id 3  end_log_pos 342 CRC32 0x418775d7 	Binlog checkpoint mysql-bin.000001
#261207  6:40:57 server id 3  end_log_pos 385 CRC32 0x3c00ab17 	Binlog checkpoint mysql-bin.000002
#261207  6:40:57 server id 3  end_log_pos 476 CRC32 0xa0f59b95 	Annotate_rows:
#Q> INSERT INTO s.i VALUES (1)
#261207  6:40:57 server id 3  end_log_pos 517 CRC32 0xdd525261 	Table_map: `s`.`i` mapped to number 18
# Number of rows: 1
#261207  6:40:57 server id 3  end_log_pos 702 CRC32 0xa4f0ef42 	Annotate_rows:
#Q> INSERT INTO s.fill(v) VALUES (REPEAT('x',10)),('y')
#261207  6:40:57 server id 3  end_log_pos 748 CRC32 0xc1df5c6e 	Table_map: `s`.`fill` mapped to number 22
# Number of rows: 2
#261207  6:40:57 server id 3  end_log_pos 966 CRC32 0x1cd8e3e4 	Annotate_rows:
#Q> INSERT INTO s.m VALUES (5)
#261207  6:40:57 server id 3  end_log_pos 1007 CRC32 0xa7cf9a50 	Table_map: `s`.`m` mapped to number 23
# Number of rows: 1
#261207  6:40:57 server id 3  end_log_pos 1205 CRC32 0xe3b9d44b 	Annotate_rows:
#Q> INSERT INTO s.i VALUES (2)
#261207  6:40:57 server id 3  end_log_pos 1246 CRC32 0xae85c56f 	Table_map: `s`.`i` mapped to number 18
# Number of rows: 1
#261207  6:40:57 server id 3  end_log_pos 1315 CRC32 0x56e6c1ce 	Xid = 12
START TRANSACTION/*!*/;
#261207  6:40:57 server id 3  end_log_pos 1284 CRC32 0x36f099d4 	Delete_rows: table id 18 flags: STMT_END_F

BINLOG '
+VQWaxMDAAAAKQAAAN4EAAAAABIAAAAAAAEAAXMAAWkAAQMAAG/Fha4=
+VQWaxkDAAAAJgAAAAQFAAAAABIAAAAAAAEAAQH+AgAAANSZ8DY=
'/*!*/;
COMMIT
/*!*/;
#261207  6:40:57 server id 3  end_log_pos 1114 CRC32 0x0bf258b2 	Query	thread_id=5	exec_time=0	error_code=0	xid=0
SET TIMESTAMP=1796625657/*!*/;
START TRANSACTION
/*!*/;
#261207  6:40:57 server id 3  end_log_pos 1045 CRC32 0x29f9b5d2 	Delete_rows: table id 23 flags: STMT_END_F

BINLOG '
+VQWaxMDAAAAKQAAAO8DAAAAABcAAAAAAAEAAXMAAW0AAQMAAFCaz6c=
+VQWaxkDAAAAJgAAABUEAAAAABcAAAAAAAEAAQH+BQAAANK1+Sk=
'/*!*/;
COMMIT
/*!*/;
#261207  6:40:57 server id 3  end_log_pos 875 CRC32 0x079a143a 	Query	thread_id=5	exec_time=0	error_code=0	xid=0
SET TIMESTAMP=1796625657/*!*/;
SET @@session.pseudo_thread_id=5/*!*/;
SET @@session.foreign_key_checks=1, @@session.sql_auto_is_null=0, @@session.unique_checks=1, @@session.autocommit=1, @@session.check_constraint_checks=1, @@session.sql_if_exists=0, @@session.explicit_defaults_for_timestamp=1, @@session.system_versioning_insert_history=0/*!*/;
SET @@session.sql_mode=1411383296/*!*/;
SET @@session.auto_increment_increment=1, @@session.auto_increment_offset=1/*!*/;
/*!\C utf8mb3 *//*!*/;
SET @@session.character_set_client=utf8mb3,@@session.collation_connection=33,@@session.collation_server=8/*!*/;
SET @@session.lc_time_names=0/*!*/;
SET @@session.collation_database=DEFAULT/*!*/;
START TRANSACTION
/*!*/;
#261207  6:40:57 server id 3  end_log_pos 806 CRC32 0x12d18ea6 	Delete_rows: table id 22 flags: STMT_END_F

BINLOG '
+VQWaxMDAAAALgAAAOwCAAAAABYAAAAAAAEAAXMABGZpbGwAAgP8AQICblzfwQ==
+VQWaxkDAAAAOgAAACYDAAAAABYAAAAAAAEAAgP8AgAAAAEAefwBAAAACgB4eHh4eHh4eHh4po7R
Eg==
'/*!*/;
COMMIT
/*!*/;
#261207  6:40:57 server id 3  end_log_pos 586 CRC32 0x41feb99b 	Xid = 9
START TRANSACTION/*!*/;
#261207  6:40:57 server id 3  end_log_pos 555 CRC32 0x1edc3a5f 	Delete_rows: table id 18 flags: STMT_END_F

BINLOG '
+VQWaxMDAAAAKQAAAAUCAAAAABIAAAAAAAEAAXMAAWkAAQMAAGFSUt0=
+VQWaxkDAAAAJgAAACsCAAAAABIAAAAAAAEAAQH+AQAAAF863B4=
'/*!*/;
COMMIT
/*!*/;
COMMIT
/*!*/;
DELIMITER ;
# End of log file
ROLLBACK /* added by mysqlbinlog */;
/*!50003 SET COMPLETION_TYPE=@OLD_COMPLETION_TYPE*/;
/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=0*/;
