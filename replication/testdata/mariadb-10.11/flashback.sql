/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
/*!40019 SET @@session.max_delayed_threads=0*/;
/*!50003 SET @OLD_COMPLETION_TYPE=@@COMPLETION_TYPE,COMPLETION_TYPE=0*/;
DELIMITER /*!*/;
#261207  0:46:48 server id 2  end_log_pos 256 CRC32 0x1a4abf89 	Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 261207  0:46:48 at startup
ROLLBACK/*!*/;
BINLOG '
+AEWaw8CAAAA/AAAAAABAAAAAAQAMTAuMTEuMTktTWFyaWFEQi0wK2RlYjEydTEtbG9nAAAAAAAA
AAAAAAAAAAAAAAAAAAD4ARZrEzgNAAgAEgAEBAQEEgAA5AAEGggAAAAICAgCAAAACgoKAAAAAAAA
CgoKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAEEwQADQgICAoKCgGJv0oa
'/*!*/;
#261207  0:46:48 server id 2  end_log_pos 285 CRC32 0x3c72f694 	Gtid list []
#261207  0:46:48 server id 2  end_log_pos 328 CRC32 0x33fbb08e 	Binlog checkpoint mysql-bin.000001
#700101  0:00:00 server id 2  end_log_pos 3265 CRC32 0x97fcac62 	Gtid list [0-1-14]
#261207  0:46:52 server id 2  end_log_pos 3372 CRC32 0x2866e8b2 	Annotate_rows:
#Q> UPDATE sandbox.f SET v='errant' WHERE id=2
#261207  0:46:52 server id 2  end_log_pos 3422 CRC32 0xefd3e70f 	Table_map: `sandbox`.`f` mapped to number 18
# Number of rows: 1
#261207  0:46:52 server id 2  end_log_pos 3603 CRC32 0x439e3875 	Annotate_rows:
#Q> DELETE FROM sandbox.f WHERE id=3
#261207  0:46:52 server id 2  end_log_pos 3653 CRC32 0xc8f5dcce 	Table_map: `sandbox`.`f` mapped to number 18
# Number of rows: 1
#261207  0:46:52 server id 2  end_log_pos 3827 CRC32 0x2fcb03d9 	Annotate_rows:
#Q> INSERT INTO sandbox.f VALUES (4,'new')
#261207  0:46:52 server id 2  end_log_pos 3877 CRC32 0x8006da0b 	Table_map: `sandbox`.`f` mapped to number 18
# Number of rows: 1
#261207  0:46:52 server id 2  end_log_pos 3950 CRC32 0x0b8d4177 	Xid = 36
START TRANSACTION/*!*/;
#261207  0:46:52 server id 2  end_log_pos 3919 CRC32 0x3db5b320 	Delete_rows: table id 18 flags: STMT_END_F

BINLOG '
/AEWaxMCAAAAMgAAACUPAAAAABIAAAAAAAEAB3NhbmRib3gAAWYAAgMPAhQAAgvaBoA=
/AEWaxkCAAAAKgAAAE8PAAAAABIAAAAAAAEAAgP8BAAAAANuZXcgs7U9
'/*!*/;
COMMIT
/*!*/;
#261207  0:46:52 server id 2  end_log_pos 3724 CRC32 0x321e358d 	Xid = 35
START TRANSACTION/*!*/;
#261207  0:46:52 server id 2  end_log_pos 3693 CRC32 0x406a1bc0 	Write_rows: table id 18 flags: STMT_END_F

BINLOG '
/AEWaxMCAAAAMgAAAEUOAAAAABIAAAAAAAEAB3NhbmRib3gAAWYAAgMPAhQAAs7c9cg=
/AEWaxcCAAAAKAAAAG0OAAAAABIAAAAAAAEAAgP8AwAAAAFjwBtqQA==
'/*!*/;
COMMIT
/*!*/;
#261207  0:46:52 server id 2  end_log_pos 3506 CRC32 0x233348e9 	Xid = 34
START TRANSACTION/*!*/;
#261207  0:46:52 server id 2  end_log_pos 3475 CRC32 0xcccc773e 	Update_rows: table id 18 flags: STMT_END_F

BINLOG '
/AEWaxMCAAAAMgAAAF4NAAAAABIAAAAAAAEAB3NhbmRib3gAAWYAAgMPAhQAAg/n0+8=
/AEWaxgCAAAANQAAAJMNAAAAABIAAAAAAAEAAgMD/AIAAAAGZXJyYW50/AIAAAABYj53zMw=
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
/*!100001 SET @@SESSION.SERVER_ID=@@GLOBAL.SERVER_ID */;
/*!100001 SET @@SESSION.GTID_DOMAIN_ID=@@GLOBAL.GTID_DOMAIN_ID */;
